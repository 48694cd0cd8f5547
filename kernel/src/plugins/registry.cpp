#include "plugins/registry.hpp"

#include <spdlog/spdlog.h>

#include "common/strings.hpp"

namespace kiln::plugins {
namespace fs = std::filesystem;

class PluginRegistry::Host final : public HostServices {
 public:
  Host(std::string name, boost::json::object config, std::shared_ptr<runtime::Metrics> metrics,
       fs::path artifacts, std::shared_ptr<SharedResolver> resolver)
      : name_(std::move(name)),
        config_(std::move(config)),
        metrics_(std::move(metrics)),
        artifacts_(std::move(artifacts)),
        resolver_(std::move(resolver)) {}

  void log(LogLevel level, std::string_view message) override {
    auto lv = spdlog::level::info;
    switch (level) {
      case LogLevel::kTrace:
        lv = spdlog::level::trace;
        break;
      case LogLevel::kDebug:
        lv = spdlog::level::debug;
        break;
      case LogLevel::kInfo:
        lv = spdlog::level::info;
        break;
      case LogLevel::kWarn:
        lv = spdlog::level::warn;
        break;
      case LogLevel::kError:
        lv = spdlog::level::err;
        break;
    }
    spdlog::log(lv, "[{}] {}", name_, message);
  }
  const boost::json::object& config() const override { return config_; }
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::now();
  }
  void count(std::string_view name, double delta) override { metrics_->add(name, name_, delta); }
  fs::path artifact_dir() override {
    fs::create_directories(artifacts_);
    return artifacts_;
  }
  const std::string& plugin_name() const override { return name_; }
  std::shared_ptr<void> selected_node(std::string_view kind) override {
    std::lock_guard lock(resolver_->mu);
    return resolver_->fn ? resolver_->fn(kind) : nullptr;
  }
  void set_config(boost::json::object c) { config_ = std::move(c); }

 private:
  std::string name_;
  boost::json::object config_;
  std::shared_ptr<runtime::Metrics> metrics_;
  fs::path artifacts_;
  std::shared_ptr<SharedResolver> resolver_;
};

PluginRegistry::PluginRegistry(std::shared_ptr<runtime::Metrics> metrics, fs::path artifacts_root)
    : metrics_(std::move(metrics)), artifacts_root_(std::move(artifacts_root)) {
  hosts_[kKernelProvider] = std::make_shared<Host>(kKernelProvider, boost::json::object{}, metrics_,
                                                   artifacts_root_ / kKernelProvider, resolver_);
}

PluginRegistry::~PluginRegistry() = default;

void PluginRegistry::set_node_resolver(NodeResolver resolver) {
  std::lock_guard lock(resolver_->mu);
  resolver_->fn = std::move(resolver);
}

void PluginRegistry::add_builtin_node(NodeEntry node) {
  node.provider = kKernelProvider;
  nodes_.push_back(std::move(node));
}

void PluginRegistry::add_builtin_tool(ToolDecl t) {
  tools_.push_back(ToolEntry{t.name, kKernelProvider, t.description, t.input_schema,
                             t.output_schema, t.nonblocking, t.actuates, t.factory, nullptr,
                             nullptr});
}

std::vector<std::string> PluginRegistry::load(const std::vector<fs::path>& files,
                                              const std::set<std::string>& disabled) {
  std::vector<std::string> refusals;
  for (const auto& file : files) {
    LoadedLibrary lib;
    try {
      lib = load_library(file);
    } catch (const PluginLoadError& e) {
      refusals.emplace_back(e.what());
      continue;
    } catch (const std::exception& e) {
      refusals.push_back("plugin " + file.string() + ": " + e.what());
      continue;
    }
    const Manifest& m = lib.manifest;
    const std::string who = "plugin " + m.name + " (" + lib.path.string() + ")";
    if (disabled.count(m.name)) {
      spdlog::info("plugin {} skipped: listed in plugins.disabled", m.name);
      continue;
    }
    std::string refusal;
    for (const auto& p : plugins_)
      if (p.name == m.name)
        refusal = who + ": duplicate plugin name '" + m.name + "', already loaded from " +
                  p.file.string() + "; remove one of the two files from the search path";
    for (const auto& n : m.nodes) {
      if (!refusal.empty()) break;
      if (const NodeEntry* other = find_node(n.kind, n.name))
        // Both named: which of the two loads first only follows the search path's order.
        refusal =
            who + ": duplicate node " + n.kind + "/" + n.name + ", already provided by " +
            other->provider +
            (other->builtin() ? std::string(" (built in)") : " (" + other->file.string() + ")") +
            "; two plugins cannot provide the same node: rename it in the one that "
            "should not have it, or list that plugin in plugins.disabled";
    }
    if (!refusal.empty()) {
      refusals.push_back(refusal);
      continue;
    }
    PluginInfo info{m.name, m.version, m.description, m.license, lib.path, lib.sha256,
                    {},     {},        m.config_keys};
    for (const auto& n : m.nodes) {
      info.nodes.push_back(n.kind + "/" + n.name);
      nodes_.push_back(NodeEntry{n.kind, n.name, m.name, n.description, lib.path, lib.sha256,
                                 n.intended_differences, n.factory, lib.library});
    }
    for (const auto& t : m.tools) {
      info.tools.push_back(t.name);
      tools_.push_back(ToolEntry{t.name, m.name, t.description, t.input_schema, t.output_schema,
                                 t.nonblocking, t.actuates, t.factory, lib.library, nullptr});
    }
    spdlog::debug("loaded {} {} from {} (sha256 {})", m.name, m.version, lib.path.string(),
                  lib.sha256.substr(0, 12));
    plugins_.push_back(std::move(info));
  }
  return refusals;
}

std::map<std::string, std::vector<ConfigKeyDecl>> PluginRegistry::declared_config_keys() const {
  std::map<std::string, std::vector<ConfigKeyDecl>> out;
  for (const auto& p : plugins_) out[p.name] = p.config_keys;
  return out;
}

void PluginRegistry::instantiate(const config::Config& config,
                                 const std::set<std::string>& isolated) {
  for (const auto& p : plugins_)
    hosts_[p.name] = std::make_shared<Host>(p.name, config.plugin_config(p.name), metrics_,
                                            artifacts_root_ / p.name, resolver_);
  for (auto& t : tools_) {
    if (t.tool || isolated.count(t.provider)) continue;
    try {
      auto tool = t.factory(host(t.provider));
      if (!tool) throw std::runtime_error("factory returned null");
      t.tool = keep_library_alive(std::move(tool), t.library, shared_host(t.provider));
    } catch (const std::invalid_argument& e) {
      // The factory's way to say its settings are wrong (as for nodes): a configuration error.
      throw config::ConfigError({e.what() + std::string(" (tool ") + t.name + ", plugin " +
                                 t.provider + "; `kiln config explain plugin_config." + t.provider +
                                 "` shows where each value was set)"});
    } catch (const std::exception& e) {
      throw PluginLoadError("plugin " + t.provider + ": factory of tool '" + t.name +
                            "' threw: " + e.what() +
                            "; fix the plugin or disable it with "
                            "--set plugins.disabled=[" +
                            t.provider + "]");
    }
  }
}

const NodeEntry* PluginRegistry::find_node(std::string_view kind, std::string_view name) const {
  for (const auto& n : nodes_)
    if (n.kind == kind && n.name == name) return &n;
  return nullptr;
}

std::vector<std::string> PluginRegistry::node_names(std::string_view kind) const {
  std::vector<std::string> out;
  for (const auto& n : nodes_)
    if (n.kind == kind) out.push_back(n.name);
  return out;
}

std::shared_ptr<HostServices> PluginRegistry::shared_host(const std::string& provider) {
  host(provider);  // throws for an unknown provider
  return hosts_.at(provider);
}

HostServices& PluginRegistry::host(const std::string& provider) {
  auto it = hosts_.find(provider);
  if (it == hosts_.end())
    throw std::out_of_range("no host for provider '" + provider + "' (plugins not instantiated)");
  return *it->second;
}

}  // namespace kiln::plugins
