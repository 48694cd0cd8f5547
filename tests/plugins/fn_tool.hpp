// Test plugins' helper: a Tool made from a callable, so each test tool is one lambda.
#pragma once

#include <utility>

#include "kiln/kiln.hpp"

namespace kiln::test {

template <class F>
class FnTool final : public Tool {
 public:
  explicit FnTool(F f) : f_(std::move(f)) {}
  ToolOutcome invoke(const boost::json::value& in, const ToolContext& ctx) override {
    return f_(in, ctx);
  }

 private:
  F f_;
};

}  // namespace kiln::test
