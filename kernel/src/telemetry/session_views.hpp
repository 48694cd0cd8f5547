// What a recorded session is made into for people, the same from the CLI and over HTTP: its
// report (`kiln report`, GET /v1/sessions/{id}/report) and the predictive assist (`kiln predict`,
// GET /v1/sessions/{id}/predict). Both are chains of tools — telemetry.session, then the roast
// plugin's roast.analyze, roast.qc, roast.report or roast.predict — run through a ToolRunner: the
// kernel's executor in process, or a server's tools from the CLI.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include <boost/json.hpp>

#include "kiln/result.hpp"
#include "kiln/tool.hpp"
#include "missions/service.hpp"

namespace kiln::telemetry {

// Runs one tool: its output, or its error (code, message, details).
using ToolRunner = std::function<Result<boost::json::value, ToolError>(const std::string& tool,
                                                                       boost::json::object input)>;

// roast.report's output for a session (html, report, summary, bytes, ...): its analysis with the
// RoR series, its QC against its targets (a failed check is the report's to show, not an error;
// a session still open has the verdict "pending") and its profile drawn behind it. An error
// names the step that failed.
// Who accepted the roast of a session's report mission after its QC failed (the `accepted_by`
// of the mission's QC step), or nullopt.
using AcceptedBy = std::function<std::optional<std::string>(const std::string& mission_id)>;
// The acceptance as `missions` holds it, for missions of `tenant` (nullopt: any); an approver by
// API key named as the key is in the database `db`.
AcceptedBy accepted_in(const missions::MissionService& missions, std::optional<std::string> tenant,
                       std::filesystem::path db);

// `accepted`, when given: a failed QC that an approver accepted on the session's report mission
// says so (as the mission's own report did), instead of a plain fail.
Result<boost::json::object, ToolError> session_report(const ToolRunner& run,
                                                      const std::string& session,
                                                      const AcceptedBy& accepted = nullptr);

// Predictive assist for a session: roast.predict's output for its curve so far, aiming at the DTR
// its profile's targets give (the target, or the middle of the range). A closed session has
// nothing left to predict: {"status": "closed", "message": "... dropped at 9:41 after CHARGE
// ..."}.
Result<boost::json::object, ToolError> session_predict(const ToolRunner& run,
                                                       const std::string& session);

// A recorded session as an Artisan log (`kiln sessions export`, GET /v1/sessions/{id}/alog): its
// readings, state channel, CHARGE and DROP and a marked FCs (an estimated one is not written:
// `fcs_estimated` says so). {"alog": text, "bytes", "fcs_estimated"}.
Result<boost::json::object, ToolError> session_alog(const ToolRunner& run,
                                                    const std::string& session);

// The spoken summary of a closed session: the audio file its report mission (roast_report) kept,
// the first audio artifact of its steps. Errors: "not_found" (no such session for `tenant`),
// "not_ready" (still open, its report under way or QUARANTINED for an approver, or a report that
// speaks none), "not_found" too for audio released (retention, a replaced report), each message
// saying what to do.
Result<missions::StoredArtifact, ToolError> session_summary_audio(
    const std::filesystem::path& db, const missions::MissionService& missions,
    const std::optional<std::string>& tenant, const std::string& session);

}  // namespace kiln::telemetry
