// `kiln mission ...`, `kiln ledger replay` and `kiln policy validate`.
#pragma once

#include <map>
#include <ostream>
#include <string>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "cli/args.hpp"
#include "missions/service.hpp"

namespace kiln::cli {

const std::map<std::string, std::string>& mission_help();

// A mission as the mission commands show it: `headline`, its state, steps (outputs cut short),
// files and what to do next; with --json the view (and `extra`) as JSON. Exit 1 when it ended
// BLOCKED, FAILED or CANCELED. Used for the local database and a server's answers alike.
int report_mission(const Args& a, std::ostream& out, const missions::MissionView& m,
                   const std::string& headline, boost::json::object extra = {});
void print_mission(const missions::MissionView& m, std::ostream& out);
// Its ledger events (as GET /v1/ledger gives them), heartbeats left out.
void print_mission_history(const boost::json::array& history, std::ostream& out);

int cmd_mission_templates(const Args& a, std::ostream& out);
int cmd_mission_start(const Args& a, std::ostream& out);
// --input and --param as a mission's inputs; `schema`: the template's (its input_schema, or an
// object with its "properties"), which keeps `--param lot=42` a string where one is asked for.
boost::json::object parse_inputs(const Args& a, const boost::json::object* schema = nullptr);
int cmd_mission_list(const Args& a, std::ostream& out);
// The table of `kiln mission list`, from missions as JSON (local or from the server).
void print_missions(const boost::json::array& missions, std::ostream& out);
// `kiln mission templates`: one line of name and description, its inputs and steps, a template.
void print_templates(const boost::json::array& templates, std::ostream& out);
int cmd_mission_show(const Args& a, std::ostream& out);
int cmd_mission_artifact(const Args& a, std::ostream& out);
int cmd_mission_approve(const Args& a, std::ostream& out);
int cmd_mission_cancel(const Args& a, std::ostream& out);
int cmd_mission_retry(const Args& a, std::ostream& out);
int cmd_mission_prune(const Args& a, std::ostream& out);
int cmd_mission_work(const Args& a, std::ostream& out);
int cmd_ledger_replay(const Args& a, std::ostream& out);
int cmd_policy_validate(const Args& a, std::ostream& out);
int cmd_keys_create(const Args& a, std::ostream& out);
int cmd_keys_list(const Args& a, std::ostream& out);
int cmd_keys_revoke(const Args& a, std::ostream& out);

}  // namespace kiln::cli
