#!/usr/bin/env bash
# The SDK as a plugin author gets it. Installs kiln to a temporary prefix, builds
# examples/minimal_plugin out of tree with find_package(Kiln) alone, loads it into the installed
# kiln and invokes its tool; then builds the same example against a copy of the SDK whose ABI
# version differs, and expects a one-line refusal naming the field.
# Usage: sdk_install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== install to $work/prefix"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/kiln/kiln.hpp" || fail "SDK headers not installed"
test -f "$work/prefix/lib/cmake/Kiln/KilnConfig.cmake" || fail "KilnConfig.cmake not installed"
test -x "$work/prefix/bin/kiln" || fail "kiln binary not installed"
test -f "$work/prefix/share/kiln/telemetry/test-vector.json" || fail "the envelope test vector is not installed"
test -f "$work/prefix/lib/kiln/plugins/kiln_strategy_rules.so" || fail "first-party plugin not installed"
# The service unit names the binary of the prefix installed to, not the configured one.
grep -qx "ExecStart=$work/prefix/bin/kiln serve" "$work/prefix/share/kiln/systemd/kiln.service" \
  || fail "the systemd unit does not start $work/prefix/bin/kiln"

echo "== build the example out of tree"
cmake -S "$src/examples/minimal_plugin" -B "$work/example" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/example" -j2 >/dev/null
test -f "$work/example/kiln_minimal.so" || fail "example plugin not built"

kiln=("$work/prefix/bin/kiln" --log-level warn --set "plugins.search_paths=[$work/example]"
      --set "gates.dir=$work/gates")
(cd "$work" && env -u KILN_CONFIG "${kiln[@]}" plugins list) | tee "$work/list.txt"
grep -q "minimal 1.0.0 (Apache-2.0)" "$work/list.txt" || fail "example not listed"

out=$(cd "$work" && "${kiln[@]}" tool invoke minimal.greet --input '{"name": "Ada"}' \
        --set plugin_config.minimal.greeting=Hi)
echo "$out"
echo "$out" | grep -q '"message": "Hi, Ada!"' || fail "tool output wrong: $out"

# The README's own command, with its paths: the example and the first-party plugins load.
readme_cmd=$(grep -m1 '^/opt/kiln/bin/kiln plugins list' "$src/examples/minimal_plugin/README.md")
readme_cmd=${readme_cmd//\/opt\/kiln/$work/prefix}
readme_cmd=${readme_cmd//\/tmp\/minimal/$work/example}
(cd "$work" && eval "$readme_cmd --log-level warn") > "$work/readme.txt" \
  || fail "the README's command failed: $readme_cmd"
grep -q "minimal 1.0.0" "$work/readme.txt" && grep -q "strategy_rules" "$work/readme.txt" \
  || fail "the README's command did not load both: $(cat "$work/readme.txt")"

# The installed kiln finds its own plugins through ${exe_dir}/../lib/kiln/plugins.
(cd "$work" && "$work/prefix/bin/kiln" plugins list --log-level warn) | grep -q "strategy_rules" \
  || fail "installed kiln does not find its installed plugins"

echo "== a plugin author's own driver test with the testkit component"
mkdir -p "$work/drivertest"
cat > "$work/drivertest/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.20)
project(drivertest CXX)
set(CMAKE_CXX_STANDARD 20)
find_package(Kiln REQUIRED COMPONENTS testkit)
add_executable(drivertest drivertest.cpp)
target_link_libraries(drivertest PRIVATE kiln::testkit)
EOF
cat > "$work/drivertest/drivertest.cpp" <<'EOF'
#define BOOST_TEST_MODULE drivertest
#include <cstdlib>

#include <boost/test/unit_test.hpp>

#include <fstream>
#include <sstream>

#include "kiln/telemetry.hpp"
#include "kiln/testkit/boost_test.hpp"
#include "kiln/testkit/telemetry_driver.hpp"

// The installed SDK's envelope type frames the installed test vector's bytes: what a C++ device
// signs (the Sig_structure) and what it sends.
BOOST_AUTO_TEST_CASE(the_sdk_frames_the_test_vector) {
  const char* file = std::getenv("VECTOR");
  BOOST_REQUIRE(file);
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  const auto v = boost::json::parse(text.str()).as_object();
  auto bytes = [&](const char* name) {
    const std::string h(v.at(name).as_string());
    std::string out;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2)
      out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
    return out;
  };
  const std::string tenant(v.at("tenant").as_string()), stream(v.at("stream").as_string());
  auto e = kiln::telemetry::Envelope::for_key(std::string(v.at("kid").as_string()),
                                              bytes("payload_cbor"));
  BOOST_TEST(e.to_be_signed(tenant, stream) == bytes("sig_structure"));
  e.signature = bytes("signature");
  BOOST_TEST(e.encode() == bytes("envelope"));
}

// The readings file of a gate run, read as it is, against the kind's suites.
BOOST_AUTO_TEST_CASE(readings_pass_the_suites) {
  const char* file = std::getenv("READINGS");
  BOOST_REQUIRE(file);
  auto control = kiln::testkit::readings_driver(file);
  KILN_CHECK_SUITE(kiln::testkit::run_telemetry_driver_contract(control));
  KILN_CHECK_SUITE(kiln::testkit::run_telemetry_driver_parity(control, control));
}
EOF
cmake -S "$work/drivertest" -B "$work/drivertest/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/drivertest/build" -j2 >/dev/null
(cd "$work" && "$work/prefix/bin/kiln" --log-level warn gate run telemetry_driver/sim \
   --set "gates.dir=$work/gates" >/dev/null)
test -f "$work/gates/telemetry_driver.readings.jsonl" || fail "the gate left no readings file"
READINGS="$work/gates/telemetry_driver.readings.jsonl" \
  VECTOR="$work/prefix/share/kiln/telemetry/test-vector.json" "$work/drivertest/build/drivertest" \
  || fail "the testkit suites failed out of tree"

echo "== a plugin without KILN_PLUGIN(fn): refused by the linker, not at load"
mkdir -p "$work/noentry"
cp "$src/examples/minimal_plugin/CMakeLists.txt" "$work/noentry/"
grep -v 'KILN_PLUGIN(' "$src/examples/minimal_plugin/minimal_plugin.cpp" > "$work/noentry/minimal_plugin.cpp"
cmake -S "$work/noentry" -B "$work/noentry/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
ne_rc=0
ne_err=$(cmake --build "$work/noentry/build" 2>&1) || ne_rc=$?
[ "$ne_rc" -ne 0 ] || fail "a plugin without KILN_PLUGIN linked"
echo "$ne_err" | grep -q "kiln_plugin_v1: undefined version" \
  || fail "the link error does not name the entry point: $ne_err"

echo "== the example against an SDK built by another compiler version: refused at configure"
cp -r "$work/prefix" "$work/prefix_cc"
sed -i 's/^set(KILN_CXX_COMPILER_MAJOR "[0-9]*")/set(KILN_CXX_COMPILER_MAJOR "99")/' \
  "$work/prefix_cc/lib/cmake/Kiln/KilnConfig.cmake"
grep -q 'KILN_CXX_COMPILER_MAJOR "99"' "$work/prefix_cc/lib/cmake/Kiln/KilnConfig.cmake" \
  || fail "KilnConfig.cmake does not record the compiler's major version"
set +e
cc_err=$(cmake -S "$src/examples/minimal_plugin" -B "$work/example_cc" \
           -DCMAKE_PREFIX_PATH="$work/prefix_cc" 2>&1)
cc_rc=$?
set -e
[ "$cc_rc" -ne 0 ] || fail "configuring against an SDK of another compiler version succeeded"
echo "$cc_err" | tr -s ' \n' ' ' | grep -q "but kiln was built with GNU 99, and kiln refuses" \
  || fail "the configure refusal does not name the compilers: $cc_err"

echo "== the same example against an SDK with another ABI version"
cp -r "$work/prefix" "$work/prefix_other"
sed -i 's/kAbiVersion = [0-9]*/kAbiVersion = 999/' "$work/prefix_other/include/kiln/abi.hpp"
cmake -S "$src/examples/minimal_plugin" -B "$work/example_other" \
  -DCMAKE_PREFIX_PATH="$work/prefix_other" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/example_other" -j2 >/dev/null
set +e
err=$(cd "$work" && "$work/prefix/bin/kiln" --log-level warn plugins list \
        --set "plugins.search_paths=[$work/example_other]" 2>&1 >/dev/null)
rc=$?
set -e
echo "$err"
[ "$rc" -eq 5 ] || fail "expected exit 5 for an ABI mismatch, got $rc"
[ "$(echo "$err" | grep -c 'kiln_minimal.so')" -eq 1 ] || fail "refusal is not one line naming the plugin"
abi=$(sed -n 's/.*kAbiVersion = \([0-9]*\).*/\1/p' "$src/kernel/include/kiln/abi.hpp")
echo "$err" | grep -q "build stamp field abi_version: expected $abi, actual 999; rebuild the plugin against kiln" \
  || fail "refusal does not name the field, values and fix"
echo "PASS"
