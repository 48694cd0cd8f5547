// The tools of the tts_engine kind: `tts.synthesize` and `tts.voices`, served by whichever node
// nodes.tts_engine selects (they answer provider_unavailable when the kind has no node).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "kiln/nodes/tts_engine.hpp"
#include "kiln/plugin.hpp"

namespace kiln::runtime {

using TtsEngineRef = std::function<std::shared_ptr<nodes::TtsEngine>()>;

std::vector<ToolDecl> tts_tools(TtsEngineRef engine);

// engine->synthesize, with an exception from the engine (a plugin's defect: the interface says
// errors are returned) turned into an `internal` error that names the node kind — so neither a
// tool call nor a streamed answer's own thread ends the process.
Result<nodes::Speech, ToolError> synthesize(const nodes::TtsEngine& engine,
                                            const nodes::SpeechRequest& request,
                                            const nodes::ChunkSink& sink);

// OpenAI's built-in voice names; a request naming one is spoken by the default voice.
bool is_openai_voice_name(std::string_view name);

}  // namespace kiln::runtime
