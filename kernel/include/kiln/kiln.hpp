// kiln/kiln.hpp — umbrella header of the kiln plugin SDK.
#pragma once

#include "kiln/abi.hpp"
#include "kiln/host.hpp"
#include "kiln/nodes/event_detector.hpp"
#include "kiln/nodes/telemetry_driver.hpp"
#include "kiln/nodes/tool_strategy.hpp"
#include "kiln/nodes/tts_engine.hpp"
#include "kiln/plugin.hpp"
#include "kiln/result.hpp"
#include "kiln/tool.hpp"
