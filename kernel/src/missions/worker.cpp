#include "missions/worker.hpp"

#include <algorithm>
#include <iterator>
#include <map>
#include <stop_token>
#include <utility>

#include <pthread.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "common/sha256.hpp"

namespace kiln::missions {
namespace json = boost::json;

namespace {

json::object worker_actor(const MissionService::Claim& c) {
  return json::object{{"name", c.worker}, {"role", "worker"}};
}

ledger::NewEvent step_event(const MissionView& m, const char* kind, const std::string& step,
                            json::object extra) {
  extra["id"] = m.id;
  extra["step"] = step;
  return ledger::NewEvent{m.tenant, "mission/" + m.id, kind, std::move(extra)};
}

std::string utc_after(std::chrono::milliseconds d) {
  return ledger::utc_millis(std::chrono::system_clock::now() + d);
}

// Heartbeats the lease every third of its length while a step runs.
class Heartbeat {
 public:
  Heartbeat(MissionService& service, MissionService::Claim& claim)
      : thread_([this, &service, &claim](std::stop_token st) {
          std::mutex mu;
          std::condition_variable_any cv;
          const auto every = std::max(service.lease() / 3, std::chrono::milliseconds(10));
          std::unique_lock lock(mu);
          for (;;) {
            cv.wait_for(lock, st, every, [] { return false; });
            if (st.stop_requested()) return;
            try {
              if (!service.heartbeat(claim)) {
                lost_ = true;
                return;
              }
            } catch (const std::exception& e) {
              spdlog::warn("mission {}: heartbeat failed: {}", claim.mission.id, e.what());
            }
          }
        }) {}
  bool lost() const { return lost_.load(); }

 private:
  std::atomic<bool> lost_{false};
  std::jthread thread_;  // last: stopped and joined first
};

// One log line for where a run left mission `m` (state `to`), from the events that say why: a
// roaster's report held for an approver shows in the server's log with the check that failed.
std::string outcome_line(const MissionView& m, const std::string& to,
                         const std::vector<ledger::NewEvent>& events) {
  std::string line = "mission " + m.id + " (" + m.template_name + "): " + to;
  std::string step, why;
  for (const auto& e : events) {
    const auto* p = e.payload.if_object();
    if (!p) continue;
    if (const auto* s = p->if_contains("step"); s && s->is_string()) step = s->as_string();
    if (e.kind == "step.failed")
      if (const auto* err = p->if_contains("error"); err && err->is_object())
        if (const auto* msg = err->as_object().if_contains("message"); msg && msg->is_string())
          why = std::string(msg->as_string());
    if (const auto* d = p->if_contains("detail"); d && d->is_string() && why.empty())
      why = std::string(d->as_string());
  }
  if (to == state::kDone) return line;
  if (!step.empty()) line += " at step " + step;
  if (!why.empty()) line += ": " + why;
  if (to == state::kQuarantined && why.empty())
    line += " (needs an approver: kiln mission approve " + m.id + ")";
  return line;
}

}  // namespace

std::string MissionRunner::run(MissionService::Claim claim) {
  MissionView& m = claim.mission;
  const MissionTemplate* t = service_.templates().find(m.template_name);
  const auto actor = worker_actor(claim);
  // A step's completion is committed together with what follows it (the next step's start, a
  // hold, the mission's completion): one durable commit instead of two. A crash in between
  // re-runs the step, as a crash during it would.
  std::vector<ledger::NewEvent> carry;
  std::vector<MissionService::StepFiles> carry_files;  // files of the carried completion
  auto with_carry = [&](std::vector<ledger::NewEvent> events) {
    carry.insert(carry.end(), std::make_move_iterator(events.begin()),
                 std::make_move_iterator(events.end()));
    return std::exchange(carry, {});
  };
  auto finish = [&](std::vector<ledger::NewEvent> events, const std::string& to) -> std::string {
    const std::string outcome = outcome_line(m, to, events);
    try {
      service_.record(claim, with_carry(std::move(events)), std::exchange(carry_files, {}));
    } catch (const MissionError& e) {
      if (e.code() != MissionError::Code::kLeaseLost) throw;
      spdlog::info("mission {}: {}", m.id, e.what());
      return "";
    }
    if (to == state::kFailed)
      spdlog::warn("{}", outcome);
    else
      spdlog::info("{}", outcome);
    return to;
  };
  if (!t)
    return finish({MissionService::transition(
                      m, "mission.failed", state::kFailed, "TEMPLATE_MISSING", actor,
                      json::object{{"detail", "template '" + m.template_name +
                                                  "' is no longer loaded (missions.dirs)"}})},
                  state::kFailed);

  std::map<std::string, json::value> outputs;
  for (const auto& s : m.steps)
    if (s.state == "DONE") outputs[s.step] = s.output;

  for (const auto& st : t->steps) {
    auto view = std::find_if(m.steps.begin(), m.steps.end(),
                             [&](const StepView& s) { return s.step == st.id; });
    if (view == m.steps.end())
      return finish({MissionService::transition(
                        m, "mission.failed", state::kFailed, "TEMPLATE_CHANGED", actor,
                        json::object{{"detail", "step '" + st.id +
                                                    "' was added to the template after the "
                                                    "mission was created"}})},
                    state::kFailed);
    if (view->tool != st.tool)
      return finish({MissionService::transition(
                        m, "mission.failed", state::kFailed, "TEMPLATE_CHANGED", actor,
                        json::object{{"step", st.id},
                                     {"detail", "step '" + st.id + "' now uses tool '" + st.tool +
                                                    "', not '" + view->tool +
                                                    "' as when the mission was created (and "
                                                    "approved)"}})},
                    state::kFailed);
    if (view->state == "DONE") continue;
    if (stopping_ && stopping_->load())
      return finish({MissionService::transition(m, "mission.released", state::kPending,
                                                "WORKER_STOPPING", actor, {})},
                    state::kPending);
    // Every step runs in template order, so its needs are done by now.
    const bool approval_required = view->approval == "required";
    if (approval_required && !view->approved_by)
      return finish(
          {MissionService::transition(m, "mission.held", state::kQuarantined, "APPROVAL_REQUIRED",
                                      actor, json::object{{"step", st.id}})},
          state::kQuarantined);
    const std::int64_t attempt = view->attempts + 1;
    if (attempt > st.max_attempts + service_.options().max_reclaims)
      return finish(
          {MissionService::transition(
              m, "mission.failed", state::kFailed, "TOO_MANY_RECLAIMS", actor,
              json::object{{"step", st.id},
                           {"detail", "the step was started " + std::to_string(view->attempts) +
                                          " times; workers kept dying under it"}})},
          state::kFailed);
    try {
      service_.record(claim,
                      with_carry({step_event(m, "step.started", st.id, {{"attempt", attempt}})}),
                      std::exchange(carry_files, {}));
    } catch (const MissionError& e) {
      if (e.code() != MissionError::Code::kLeaseLost) throw;
      spdlog::info("mission {}: {}", m.id, e.what());
      return "";
    }

    ToolOutcome outcome = [&]() -> ToolOutcome {
      json::value input;
      try {
        RenderContext ctx{&m.inputs, &outputs, m.id, m.tenant};
        input = render(st.input, ctx);
      } catch (const std::exception& e) {
        return tool_error(error_code::kInvalidInput,
                          "step '" + st.id + "': input template: " + e.what());
      }
      runtime::ToolCall call;
      call.tool = st.tool;
      call.tenant = m.tenant;
      call.input = std::move(input);
      call.request_id = m.id + "/" + st.id + "/" + std::to_string(attempt);
      if (st.timeout_ms) call.timeout = std::chrono::milliseconds(*st.timeout_ms);
      // The approver as a person reads it (the view names an API key by its name): a tool that
      // writes it down, such as the roast report's "accepted by", shows who it was.
      if (view->approved_by) call.approved_by = *view->approved_by;
      Heartbeat hb(service_, claim);
      auto result = executor_.invoke(call);
      if (hb.lost())
        return tool_error("lease_lost", "the lease was lost while the step ran", false);
      return result;
    }();
    if (!outcome.ok() && outcome.error().code == "lease_lost") {
      spdlog::info("mission {}: lease lost during step {}; its result is not recorded", m.id,
                   st.id);
      return "";
    }

    if (outcome.ok()) {
      outputs[st.id] = outcome.value().output;
      json::object completed{{"output", outcome.value().output}};
      if (auto& files = outcome.value().artifacts; !files.empty()) {
        // The ledger holds each file's digest; the bytes go to mission_artifacts.
        json::array listed;
        std::vector<std::string> digests;
        for (const auto& f : files) {
          digests.push_back(common::sha256_hex(f.data));
          listed.push_back(json::object{{"name", f.name},
                                        {"media_type", f.media_type},
                                        {"bytes", f.data.size()},
                                        {"sha256", digests.back()}});
        }
        completed["artifacts"] = std::move(listed);
        carry_files.push_back({st.id, std::move(files), std::move(digests)});
      }
      std::vector<ledger::NewEvent> events{
          step_event(m, "step.completed", st.id, std::move(completed))};
      const bool last = &st == &t->steps.back();
      if (last) {
        events.push_back(MissionService::transition(m, "mission.completed", state::kDone,
                                                    "COMPLETED", actor, {}));
        return finish(std::move(events), state::kDone);
      }
      carry = std::move(events);
      view->state = "DONE";
      view->output = outputs[st.id];
      continue;
    }
    const ToolError& err = outcome.error();
    json::object error{{"code", err.code},
                       {"message", err.message},
                       {"retryable", err.retryable},
                       {"details", err.details}};
    std::vector<ledger::NewEvent> events{
        step_event(m, "step.failed", st.id, {{"attempt", attempt}, {"error", error}})};
    std::string to;
    if (err.retryable && attempt < st.max_attempts) {
      auto delay = std::chrono::milliseconds(st.backoff_ms);
      for (std::int64_t i = 1; i < attempt && delay < std::chrono::minutes(10); ++i) delay *= 2;
      to = state::kRetry;
      events.push_back(MissionService::transition(
          m, "mission.retry_scheduled", to, "STEP_RETRYABLE_ERROR", actor,
          json::object{{"step", st.id}, {"not_before", utc_after(delay)}, {"code", err.code}}));
    } else if (view->approval == "on_failure") {
      to = state::kQuarantined;
      events.push_back(
          MissionService::transition(m, "mission.held", to, "STEP_FAILED", actor,
                                     json::object{{"step", st.id}, {"code", err.code}}));
    } else {
      to = state::kFailed;
      events.push_back(
          MissionService::transition(m, "mission.failed", to, "STEP_FAILED", actor,
                                     json::object{{"step", st.id}, {"code", err.code}}));
    }
    return finish(std::move(events), to);
  }
  // Every step was already done (a reclaimed mission whose last step completed).
  return finish(
      {MissionService::transition(m, "mission.completed", state::kDone, "COMPLETED", actor, {})},
      state::kDone);
}

std::string worker_name(int n) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(getpid()) + ":" + std::to_string(n);
}

WorkerPool::WorkerPool(MissionService& service, const runtime::ToolRuntimeExecutor& executor,
                       int workers, std::chrono::milliseconds poll)
    : service_(service), executor_(executor), poll_(poll) {
  for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i] { loop(i); });
}

WorkerPool::~WorkerPool() {
  stop();
}

void WorkerPool::wake() {
  cv_.notify_all();
}

void WorkerPool::stop() {
  stop_flag_ = true;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void WorkerPool::loop(int n) {
  const std::string name = worker_name(n);
  MissionRunner runner(service_, executor_, &stop_flag_);
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    bool worked = false;
    try {
      if (auto claim = service_.claim(name)) {
        worked = true;
        spdlog::debug("worker {}: claimed mission {}", name, claim->mission.id);
        auto state = runner.run(std::move(*claim));
        ++runs_;
        (void)state;
      }
    } catch (const std::exception& e) {
      spdlog::error("worker {}: {}", name, e.what());
    }
    if (!worked) {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, poll_, [&] { return stopping_; });
    }
  }
}

FileRetention::FileRetention(MissionService& service, std::chrono::seconds keep)
    : service_(service), keep_(keep) {
  const auto every = std::clamp<std::chrono::milliseconds>(
      std::chrono::duration_cast<std::chrono::milliseconds>(keep) / 4,
      std::chrono::milliseconds(100), std::chrono::hours(1));
  thread_ = std::thread([this, every] {
    pthread_setname_np(pthread_self(), "kiln-retention");
    for (;;) {
      try {
        run_once();
      } catch (const std::exception& e) {
        spdlog::warn("retention (missions.keep_files): {}; trying again in {} s", e.what(),
                     std::chrono::duration_cast<std::chrono::seconds>(every).count());
      }
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, every, [&] { return stopping_.load(); })) return;
    }
  });
}

FileRetention::~FileRetention() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

MissionService::Pruned FileRetention::run_once() {
  const std::string before = ledger::utc_millis(std::chrono::system_clock::now() - keep_);
  const auto pruned = service_.prune_files(std::nullopt, before, Actor{"retention", Role::kAdmin},
                                           "missions.keep_files: finished before " + before, false,
                                           [this] { return stopping_.load(); });
  if (pruned.files > 0) {
    files_ += static_cast<std::int64_t>(pruned.files);
    spdlog::info(
        "retention (missions.keep_files): released {} file(s), {} bytes, of {} mission(s) "
        "finished before {}",
        pruned.files, pruned.bytes, pruned.missions, before);
  }
  return pruned;
}

MissionView run_until_settled(MissionService& service, const runtime::ToolRuntimeExecutor& executor,
                              const std::string& id, std::chrono::milliseconds timeout,
                              const std::function<void(const MissionView&)>& on_change) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string name = worker_name(0);
  MissionRunner runner(service, executor);
  std::string said;  // the state and reason on_change heard last
  for (;;) {
    auto m = service.get(std::nullopt, id);
    if (!m) throw MissionError(MissionError::Code::kNotFound, "no mission " + id);
    if (on_change && m->state + "/" + m->reason != said) {
      said = m->state + "/" + m->reason;
      on_change(*m);
    }
    if (is_settled(m->state)) return *m;
    if (std::chrono::steady_clock::now() >= deadline) return *m;
    if (auto claim = service.claim(name, id)) {
      runner.run(std::move(*claim));
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace kiln::missions
