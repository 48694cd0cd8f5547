// Mission workers: claim a mission, run its steps through the ToolRuntimeExecutor while
// heartbeating the lease, record each step and the mission's next state.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "missions/service.hpp"
#include "runtime/executor.hpp"

namespace kiln::missions {

class MissionRunner {
 public:
  // `stopping`, when set, is checked between steps: a stopping worker hands the mission back
  // (mission.released → PENDING) instead of running its next step.
  MissionRunner(MissionService& service, const runtime::ToolRuntimeExecutor& executor,
                const std::atomic<bool>* stopping = nullptr)
      : service_(service), executor_(executor), stopping_(stopping) {}
  // Runs a claimed mission until it leaves RUNNING (DONE, FAILED, QUARANTINED, RETRY) or the
  // lease is lost (canceled, reclaimed). Returns the state it left the mission in, or "" when
  // the lease was lost. Storage errors propagate; the lease then lapses and another worker
  // reclaims the mission.
  std::string run(MissionService::Claim claim);

 private:
  MissionService& service_;
  const runtime::ToolRuntimeExecutor& executor_;
  const std::atomic<bool>* stopping_;
};

// A unique worker name: host:pid:n.
std::string worker_name(int n);

// Workers that poll for runnable missions until stopped.
class WorkerPool {
 public:
  WorkerPool(MissionService& service, const runtime::ToolRuntimeExecutor& executor, int workers,
             std::chrono::milliseconds poll);
  ~WorkerPool();
  // Wakes idle workers (a mission was just created in this process).
  void wake();
  // Finishes the current step of every worker and returns; missions left RUNNING are reclaimed
  // after their lease by the next process.
  void stop();
  std::int64_t missions_run() const { return runs_.load(); }

 private:
  void loop(int n);

  MissionService& service_;
  const runtime::ToolRuntimeExecutor& executor_;
  std::chrono::milliseconds poll_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::atomic<bool> stop_flag_{false};  // read by runners between steps
  std::atomic<std::int64_t> runs_{0};
  std::vector<std::thread> threads_;
};

// missions.keep_files: releases the files of missions finished more than `keep` ago, at start
// and then every quarter of `keep` (at most hourly, at least every 100 ms), until destroyed. A
// pass that fails is logged and tried again at the next.
class FileRetention {
 public:
  FileRetention(MissionService& service, std::chrono::seconds keep);
  ~FileRetention();
  // One pass now: what it released.
  MissionService::Pruned run_once();
  std::int64_t files_released() const { return files_.load(); }

 private:
  MissionService& service_;
  std::chrono::seconds keep_;
  std::atomic<std::int64_t> files_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stopping_{false};  // also ends a pass between missions
  std::thread thread_;
};

// Drives one mission to a settled state from this process: claims it whenever it is runnable
// (waiting out RETRY delays), until it is terminal or QUARANTINED, or `timeout` passes. Another
// process holding it is waited for. Returns the final view. `on_change`, when given, hears of
// each state (and reason) the mission takes on the way, the first included.
MissionView run_until_settled(MissionService& service, const runtime::ToolRuntimeExecutor& executor,
                              const std::string& id, std::chrono::milliseconds timeout,
                              const std::function<void(const MissionView&)>& on_change = {});

}  // namespace kiln::missions
