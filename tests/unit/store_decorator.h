// SPDX-License-Identifier: MIT
#pragma once

#include "gcp/store.h"

#include <memory>

namespace gcp::testing {

/// A store that passes every call to a real one: a test overrides the calls it wants
/// to fail or watch (a full disk at the commit, say) without a seam in the store itself.
class StoreDecorator : public store::Store {
 public:
  explicit StoreDecorator(std::unique_ptr<store::Store> inner) : inner_(std::move(inner)) {}

  const store::stdfs::path& root() const override { return inner_->root(); }
  std::vector<std::string> jobs() override { return inner_->jobs(); }
  std::optional<manifest::Job> load_job(const std::string& job) override { return inner_->load_job(job); }
  void save_job(const manifest::Job& job) override { inner_->save_job(job); }
  store::stdfs::path job_dir(const std::string& job) override { return inner_->job_dir(job); }
  std::optional<fs::FileLock> try_lock_job(const std::string& job) override { return inner_->try_lock_job(job); }
  store::Staging begin(const std::string& job) override { return inner_->begin(job); }
  store::Staging join(const std::string& job, uint64_t seq, const std::string& part) override {
    return inner_->join(job, seq, part);
  }
  void commit(store::Staging& staging, manifest::Checkpoint& cp) override {
    ingest(staging, cp);
    publish(staging, cp);
  }
  void ingest(store::Staging& staging, manifest::Checkpoint& cp) override { inner_->ingest(staging, cp); }
  void publish(store::Staging& staging, manifest::Checkpoint& cp) override { inner_->publish(staging, cp); }
  void abort(store::Staging& staging) noexcept override { inner_->abort(staging); }
  std::vector<uint64_t> checkpoints(const std::string& job) override { return inner_->checkpoints(job); }
  manifest::Checkpoint load_checkpoint(const std::string& job, uint64_t seq) override {
    return inner_->load_checkpoint(job, seq);
  }
  manifest::Checkpoint load_checkpoint_metadata(const std::string& job, uint64_t seq) override {
    return inner_->load_checkpoint_metadata(job, seq);
  }
  void prepare_read(const std::string& job) override { inner_->prepare_read(job); }
  void materialize(const manifest::Checkpoint& cp, const std::string& unit, const store::stdfs::path& into) override {
    inner_->materialize(cp, unit, into);
  }
  std::optional<store::Corrupt> stream_image(const manifest::Checkpoint& cp, const std::string& unit,
                                             const manifest::ImageFile& image, const Sink& sink,
                                             log::Progress* progress) override {
    return inner_->stream_image(cp, unit, image, sink, progress);
  }
  store::VerifyReport verify(const manifest::Checkpoint& cp) override { return inner_->verify(cp); }
  void remove_checkpoint(const std::string& job, uint64_t seq) override { inner_->remove_checkpoint(job, seq); }
  void remove_job(const std::string& job) override { inner_->remove_job(job); }
  store::GcReport gc(std::chrono::seconds wait) override { return inner_->gc(wait); }
  manifest::json usage() override { return inner_->usage(); }
  void append_event(const std::string& job, manifest::json event) override {
    inner_->append_event(job, std::move(event));
  }

 private:
  std::unique_ptr<store::Store> inner_;
};

}  // namespace gcp::testing
