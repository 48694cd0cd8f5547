// `kiln record`, `kiln devices add|rotate|revoke|list`, `kiln sessions list|show|mark`, `kiln
// report`.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>

#include <boost/json/fwd.hpp>
#include <boost/json/object.hpp>

#include "cli/args.hpp"

namespace kiln::cli {

const std::map<std::string, std::string>& telemetry_help();

// Where `devices add|rotate` write a new secret key without --key-out: DIR/TENANT/DEVICE.KID.key,
// DIR the directory `devices` beside the database (storage.path; var/devices by default), or
// var/devices with --server (the server's storage is not this machine's).
std::filesystem::path default_key_file(const std::filesystem::path& dir, const std::string& tenant,
                                       const std::string& device, const std::string& kid);

int cmd_record(const Args& a, std::ostream& out, std::ostream& err);
int cmd_devices_add(const Args& a, std::ostream& out);
int cmd_devices_rotate(const Args& a, std::ostream& out);
int cmd_devices_revoke(const Args& a, std::ostream& out);
int cmd_devices_list(const Args& a, std::ostream& out);
int cmd_sessions_list(const Args& a, std::ostream& out);
int cmd_sessions_show(const Args& a, std::ostream& out);
// `kiln sessions mark` and `kiln sessions weigh`.
int cmd_sessions_mark(const Args& a, std::ostream& out);
// Their request: the session (SESSION, or with --device D that device's newest session, through
// `newest`), the action ("mark" or "weigh") and the body of POST /v1/sessions/{id}:ACTION.
// Throws std::invalid_argument for a usage error.
struct MarkArgs {
  std::string session;
  std::string action;
  boost::json::object body;
};
MarkArgs mark_args(const Args& a,
                   const std::function<std::optional<std::string>(const std::string&)>& newest);
// The sessions table of `kiln sessions list`, from sessions as the API gives them (local and
// --server print the same).
void print_sessions(const boost::json::array& sessions, std::ostream& out);
// Device keys as GET /v1/devices gives them (with their profiles), as a table.
void print_devices(const boost::json::array& keys, std::ostream& out);
// One session as `kiln sessions show` prints it, from GET /v1/sessions/{id}'s JSON (with
// "samples", the count, when known).
void print_session(const boost::json::object& session, std::ostream& out);
int cmd_report(const Args& a, std::ostream& out, std::ostream& err);
int cmd_sessions_export(const Args& a, std::ostream& out, std::ostream& err);
int cmd_predict(const Args& a, std::ostream& out, std::ostream& err);

}  // namespace kiln::cli
