// Roast sessions from a device's stored telemetry. The sessionizer follows each (tenant, device):
// idle, it keeps the last minutes of samples and asks the selected event_detector node for a
// CHARGE; a CHARGE opens a session (a time range of the device's samples, starting a little
// before it, within the boots whose clock it follows); the detector's DROP, the roaster leaving
// its roasting state, silence, a maximum length, or a reboot whose clock starts over close it.
// Opening and closing are ledger events (session.opened, session.closed) and the telemetry_sessions
// table is their projection; a closed session is handed on (the kernel starts the roast_report
// mission for it). See docs/architecture/telemetry.md.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include "kiln/nodes/event_detector.hpp"
#include "kiln/telemetry.hpp"
#include "ledger/ledger.hpp"
#include "missions/service.hpp"

namespace kiln::storage {
class Connection;
}

namespace kiln::telemetry {

// "no session 'ID' in tenant T (…)": the one refusal of every route, tool and command that looks
// a session up; `tenant` nullopt for local administration across tenants.
std::string no_session(const std::string& id, const std::optional<std::string>& tenant);

struct SessionInfo {
  std::string id;
  std::string tenant;
  std::string device;
  std::string state;  // "open" | "closed"
  double start_t = 0;
  double charge_t = 0;
  std::optional<double> end_t;
  std::optional<double> drop_t;  // the DROP it closed at (close_reason "drop")
  // Times it was opened again after closing for silence, by readings that continued it.
  std::int64_t reopens = 0;
  // "drop" (the detector's DROP: a BT break, or leaving the roasting state) | "silence" |
  // "max_length" | "reboot" (the device booted again and its clock started over)
  std::string close_reason;
  std::string opened_at;
  std::optional<std::string> closed_at;
  std::optional<std::string> mission_id;
  // The profile its device was assigned when the session opened, pinned to the version then
  // current (ProfileStore::assign); QC targets and phase temperatures come from it.
  std::optional<std::string> profile;
  std::int64_t profile_version = 0;
  // The device boots whose readings it holds (a recorder restarted mid-roast continues it from
  // its next boot; a clock that starts over on a new boot does not): readings of other boots in
  // the same time range are not this session's. Unset for sessions recorded before migration 9.
  std::optional<std::int64_t> first_boot, last_boot;
  // Of an open session read by list() or get(): the time of its newest reading so far.
  std::optional<double> last_t;
  // Events a roaster marked (session.marked): event name → device time. The session's analysis
  // takes a marked event over the detector's (first crack is heard, not seen).
  std::map<std::string, double> marks;
  // The batch's weights a roaster entered (session.weighed), in grams: green beans charged,
  // roasted beans out.
  std::optional<double> green_g, roasted_g;
  // Of a session read by list() or get(): where its report mission stands — the mission's state,
  // its QC verdict (pass, warn, fail; unset before QC ran) and who accepted a failed roast.
  struct Report {
    std::string state;
    std::optional<std::string> verdict, accepted_by;
    // Made for other marks or weights than the session has now (a change with report: false).
    bool outdated = false;
    // Its files (the spoken summary) were released by retention (mission.artifacts_released).
    bool files_released = false;
  };
  std::optional<Report> report;
  boost::json::object to_json() const;
  // What its report mission is started for, as the mission's inputs carry it: {"marks": {event:
  // device time in whole ms}} and, once weighed, "weight": {"green_mg", "roasted_mg"} (whole
  // numbers: exact through the stored inputs that idempotency and `outdated` compare).
  boost::json::object report_inputs() const;
};

// The events a roaster may mark on a session, in the order a roast passes them.
inline constexpr std::array<const char*, 4> kMarkableEvents{"CHARGE", "DRY_END", "FCs", "DROP"};
// The event `text` names ("fcs", "FCs", "dry end", "DRY_END"), as kMarkableEvents spells it;
// nullopt for anything else.
std::optional<std::string> markable_event(std::string_view text);

// A roaster's mark: when `event` happened. `t` (device time, epoch seconds), else `after_charge`
// (seconds after the session's CHARGE, as a roast's clock reads), else now (this machine's
// clock: a live mark, as first crack is heard). `clear` removes the mark instead.
struct Mark {
  std::string event;
  std::optional<double> t, after_charge;
  bool clear = false;
  // {"event", "t", "after_charge", "clear"} as POST /v1/sessions/{id}:mark takes them (other
  // members are the caller's). Throws missions::MissionError (invalid_input) for a time given
  // twice or with clear.
  static Mark from_json(const boost::json::object& body);
};

struct SessionOptions {
  double preroll_s = 30;       // samples kept before CHARGE
  double silence_s = 120;      // an open session without new samples this long (wall time) closes
  double max_length_s = 1800;  // a session longer than this (device time) closes
  // A session that closes at a DROP this soon after CHARGE (device time) starts no report: a
  // few seconds of a roaster's state flickering to "roasting" is no roast for an approver. (One
  // closed for silence or a reboot keeps its report, which says what is missing.)
  double min_length_s = 60;
  double idle_buffer_s = 300;  // device time kept while no session is open
  // A session closed for silence opens again when readings go on within this much device time
  // of its last one (the device kept recording; its spool drained late).
  double resume_gap_s = 30;
  // A session whose report is due this long (a close, or a roaster's change asking for one)
  // with no report mission recorded is handed on again — the process stopped in between, or
  // starting the mission failed. Looked for this often, among reports due within a day; a start
  // that fails again is asked less often (up to hourly). 0: never (every process but kiln serve,
  // so that one process does it).
  double report_retry_s = 30;
  // A mark without a time (made as it happens) on an open session whose device has sent nothing
  // for this long (wall time) past twice the time its last batch covered (a recorder sending a
  // batch a minute is not quiet after 60 s) is refused: it would land past the readings, and the
  // report would put it at the last one. Given with its time it is taken. Known only to the
  // process that ingests the device's batches (kiln serve).
  double live_mark_quiet_s = 60;
};

class Sessionizer {
 public:
  using DetectorFn = std::function<std::shared_ptr<nodes::EventDetector>()>;
  // Starts the report of a session that closed (or that a roaster changed after it closed) and
  // returns the mission's id, recorded as the session's (session.reported); nullopt when none
  // was started. Not given: sessions are not reported.
  using ClosedFn = std::function<std::optional<std::string>(const SessionInfo&)>;
  // Loads the open sessions from storage (their samples included) and starts the worker.
  Sessionizer(ledger::SqliteLedger& ledger, DetectorFn detector, ClosedFn on_closed,
              SessionOptions options);
  ~Sessionizer();
  Sessionizer(const Sessionizer&) = delete;
  Sessionizer& operator=(const Sessionizer&) = delete;

  // Queues stored samples of a device (one batch's boot); the worker handles them in arrival
  // order, coalescing what arrives while it works (one detection per device and boot per round).
  // `seq`: the batch's sequence number in its boot (0: not known); a boot's first batch (1) has
  // nothing of its boot stored before it.
  void add(const std::string& tenant, const std::string& device, std::int64_t boot,
           std::vector<Sample> samples, std::uint64_t seq = 0);
  // Returns once everything queued before the call is handled (tests, `kiln record` locally).
  void flush();
  // Closes open sessions silent for options.silence_s (the worker calls it every second).
  void sweep();
  // Hands on again the sessions whose report has been due for options.report_retry_s (within a
  // day) without a mission recorded for it (the worker calls it every report_retry_s).
  void start_due_reports();
  // Records which mission reports a session (session.reported). With `due_since`, only while
  // the session's report is still due since then (no newer report was recorded meanwhile);
  // returns whether it was recorded.
  bool set_mission(const SessionInfo& s, const std::string& mission_id,
                   const std::optional<std::string>& due_since = std::nullopt);
  // Records (or clears) a roaster's mark on a session of `tenant` (session.marked) and returns
  // the session as it is then. The time must lie within the session's readings (up to now for
  // an open one) and in roast order with its CHARGE and other marks. A closed session is handed
  // on again (its report made anew with the mark) unless `report` is false. Throws
  // missions::MissionError: not_found, invalid_input (an unknown event, a time outside the
  // session or out of order), forbidden (below operator).
  SessionInfo mark(const std::string& tenant, const std::string& id, const Mark& mark,
                   const missions::Actor& by, bool report = true);
  // Records the batch's weights (session.weighed; either may be left as it is): green beans
  // charged and roasted beans out, in grams. Roasted must weigh less than green. A closed
  // session is handed on again as for mark(). Throws missions::MissionError: not_found,
  // invalid_input (no weight, one that is not above 0 g or over 100 kg, roasted not below green),
  // forbidden (below operator).
  SessionInfo weigh(const std::string& tenant, const std::string& id, std::optional<double> green_g,
                    std::optional<double> roasted_g, const missions::Actor& by, bool report = true);
  // A roaster's change as POST /v1/sessions/{id}:mark and :weigh take it (and `kiln sessions
  // mark|weigh` sends it): `action` "mark" (Mark::from_json's members) or "weigh" ("green_g",
  // "roasted_g"), with "report" (default true). Throws as mark() and weigh() do.
  SessionInfo change(const std::string& tenant, const std::string& id, const std::string& action,
                     const boost::json::object& body, const missions::Actor& by);

  // Reads (any process): sessions newest first (by start, then id); one session; its samples in
  // time order.
  struct ListFilter {
    std::optional<std::string> tenant;  // nullopt: every tenant (local administration)
    std::optional<std::string> device;
    std::int64_t limit = 100;
    std::optional<double> since;       // start_t at or after (device epoch seconds)
    std::optional<double> before;      // start_t before
    std::optional<std::string> state;  // "open" or "closed"
    // The page after this session (the last one of the previous page), in the same order;
    // one that is none (or another tenant's) throws MissionError kInvalidInput, field
    // "starting_after".
    std::optional<std::string> starting_after;
  };
  static std::vector<SessionInfo> list(const std::filesystem::path& db, const ListFilter& f);
  static std::optional<SessionInfo> get(const std::filesystem::path& db,
                                        const std::optional<std::string>& tenant,
                                        const std::string& id);
  // Its samples in time order; with `after`, only those later than that time (a live view asks
  // for what came since the newest it has).
  static std::vector<Sample> samples(const std::filesystem::path& db, const SessionInfo& s,
                                     std::optional<double> after = std::nullopt);
  // The session as GET /v1/sessions/{id} and `kiln sessions show` give it: to_json() and the
  // number of its readings ("samples").
  static boost::json::object described(const std::filesystem::path& db, const SessionInfo& s);

 private:
  struct Device {
    std::vector<Sample> buffer;  // device time order
    std::optional<SessionInfo> open;
    double last_end_t = -1;                  // end of the last closed session (device time)
    std::optional<SessionInfo> last_closed;  // on this timeline
    // The newest boot handled, and the oldest whose readings are in `buffer`: a session opened
    // from the buffer starts there.
    std::optional<std::int64_t> boot, buffer_boot;
    std::chrono::steady_clock::time_point last_arrival = std::chrono::steady_clock::now();
    double last_batch_span_s = 0;  // device time its last batch covered: about its cadence
    bool loaded = false;
  };
  struct Item {
    std::string tenant, device;
    std::int64_t boot = 0;
    std::vector<Sample> samples;
    std::uint64_t seq = 0;
  };
  void run();
  // `first_seq`: the sequence number of the first batch of `samples` (0: not known).
  void handle(const std::string& tenant, const std::string& device, std::int64_t boot,
              std::vector<Sample> samples, std::uint64_t first_seq = 0);
  void load(const std::string& tenant, const std::string& device, Device& d,
            std::uint64_t first_seq);
  void open_session(const std::string& tenant, const std::string& device, Device& d,
                    double charge_t);
  // Opens `d.last_closed` again (it closed for silence; readings now continue it).
  void reopen_session(Device& d);
  void close_session(Device& d, double end_t, const std::string& reason,
                     std::optional<double> drop_t = std::nullopt);
  // After a roaster's mark or weights changed session `s`: the worker's copy follows, and a
  // closed session is handed on again (its report made anew) when `report`.
  void changed_by_roaster(const SessionInfo& s, bool report);
  // on_closed_, and the mission it started recorded as the session's (see set_mission for
  // `due_since`); whether it was.
  bool hand_on(const SessionInfo& s, const std::optional<std::string>& due_since = std::nullopt);

  ledger::SqliteLedger& ledger_;
  DetectorFn detector_;
  ClosedFn on_closed_;
  SessionOptions options_;
  std::mutex mu_;  // queue_, stop_, pending_
  std::condition_variable cv_, idle_cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
  bool busy_ = false;
  std::mutex state_mu_;  // devices_ (worker, sweep)
  std::map<std::pair<std::string, std::string>, Device> devices_;
  bool warned_no_detector_ = false;
  std::chrono::steady_clock::time_point last_due_check_ = std::chrono::steady_clock::now();
  // Due reports whose start failed: asked again later each time (worker thread).
  struct Backoff {
    int failures = 0;
    std::chrono::steady_clock::time_point next{};
  };
  std::map<std::string, Backoff> report_backoff_;
  // A roaster's change asking for a report, and the due-report pass from its re-read of a
  // session to the mission recorded, one at a time: a pass's report is started for the session
  // as it was read and recorded, and the change's own report follows it, instead of the change
  // landing in between and the pass's mission, for the marks before it, running unrecorded.
  std::mutex report_mu_;
  bool told_of_stale_reports_ = false;
  std::thread worker_;
};

// Applies session.* events to telemetry_sessions (registered with the ledger).
void project_sessions(storage::Connection& c, const ledger::Event& e);

}  // namespace kiln::telemetry
