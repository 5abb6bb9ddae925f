// SPDX-License-Identifier: MIT
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <ostream>

namespace {

// doctest only counts the test cases a decorator skipped; this says which and why
// (gcp::testing::skip_unless puts the reason in the description), one line each,
// before the summary: "[doctest] skipped: <test>: <why>".
class SkipReasons : public doctest::IReporter {
 public:
  explicit SkipReasons(const doctest::ContextOptions& options) : options_(options) {}

  void test_case_skipped(const doctest::TestCaseData& test) override {
    if (!test.m_skip || options_.no_skip) return;  // filtered out, or run anyway (--no-skip)
    const char* why = test.m_description && *test.m_description ? test.m_description : "skip decorator";
    *options_.cout << "[doctest] skipped: " << test.m_name << ": " << why << "\n";
  }

  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}

 private:
  const doctest::ContextOptions& options_;
};

}  // namespace

REGISTER_LISTENER("skip-reasons", 1, SkipReasons);
