// LR schedulers. Rates come from closed forms of the epoch and the groups' initial rates
// ("initial_lr", kept in each param group as PyTorch does), never from the current rate, so a
// resumed or chained schedule reproduces the same values.
#include "optim/lr_scheduler.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/json.h"

namespace kiln::optim {

// ---------------------------------------------------------------- base

LRScheduler::LRScheduler(Optimizer& opt) : optimizer_(opt) {
  for (auto& g : opt.param_groups()) {
    if (!g.options.contains("initial_lr")) g.options["initial_lr"] = g.lr();
    base_lrs_.push_back(g.options["initial_lr"].get<double>());
  }
}

void LRScheduler::set_epoch(int64_t epoch) {
  KILN_CHECK(epoch >= 0, name(), "::set_epoch: the epoch must be >= 0, got ", epoch);
  auto& groups = optimizer_.param_groups();
  KILN_CHECK(groups.size() == base_lrs_.size(), name(), ": the optimizer has ", groups.size(),
             " param groups but the scheduler was created for ", base_lrs_.size(),
             "; create the "
             "scheduler after adding every group");
  last_epoch_ = epoch;
  last_lr_ = lr_at(epoch);
  for (size_t i = 0; i < groups.size(); ++i) groups[i].options["lr"] = last_lr_[i];
  after_set_epoch();
}

void LRScheduler::step() { set_epoch(last_epoch_ + 1); }

nlohmann::json LRScheduler::state_dict() const {
  return {{"scheduler", name()}, {"last_epoch", last_epoch_}, {"base_lrs", base_lrs_}, {"last_lr", last_lr_}};
}

void LRScheduler::load_state_dict(const nlohmann::json& s) {
  const detail::JsonIn in(s, name() + "::load_state_dict",
                          "expected {\"last_epoch\", \"base_lrs\", ...} as state_dict() writes it");
  if (auto saved_by = in.find("scheduler"))
    KILN_CHECK(saved_by->json() == name(), name(), "::load_state_dict: the state belongs to ",
               detail::json_text(saved_by->json()));
  auto base = in["base_lrs"].as_doubles();
  KILN_CHECK(base.size() == base_lrs_.size(), name(), "::load_state_dict: the state has ", base.size(),
             " param groups, the scheduler has ", base_lrs_.size());
  // An epoch count, not a position in an unbounded loop: -1 (before the first step) up to 2^31.
  const int64_t last_epoch = in["last_epoch"].as_int(-1, int64_t(1) << 31);
  std::vector<double> last_lr;
  if (auto l = in.find("last_lr")) {
    last_lr = l->as_doubles();
    KILN_CHECK(last_lr.size() == base_lrs_.size(), name(), "::load_state_dict: last_lr has ", last_lr.size(),
               " rates, the scheduler has ", base_lrs_.size(), " param groups");
  }
  base_lrs_ = std::move(base);
  last_epoch_ = last_epoch;
  last_lr_ = last_lr.empty() ? lr_at(last_epoch_) : std::move(last_lr);
}

// ---------------------------------------------------------------- simple schedules

StepLR::StepLR(Optimizer& opt, int64_t step_size, double gamma)
    : LRScheduler(opt), step_size_(step_size), gamma_(gamma) {
  KILN_CHECK(step_size > 0, "StepLR: step_size must be positive, got ", step_size);
  set_epoch(0);
}

std::vector<double> StepLR::lr_at(int64_t epoch) const {
  std::vector<double> out;
  for (double b : base_lrs()) out.push_back(b * std::pow(gamma_, double(epoch / step_size_)));
  return out;
}

MultiStepLR::MultiStepLR(Optimizer& opt, std::vector<int64_t> milestones, double gamma)
    : LRScheduler(opt), milestones_(std::move(milestones)), gamma_(gamma) {
  std::sort(milestones_.begin(), milestones_.end());
  set_epoch(0);
}

std::vector<double> MultiStepLR::lr_at(int64_t epoch) const {
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), epoch) - milestones_.begin();
  std::vector<double> out;
  for (double b : base_lrs()) out.push_back(b * std::pow(gamma_, double(passed)));
  return out;
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& opt, int64_t t_max, double eta_min)
    : LRScheduler(opt), t_max_(t_max), eta_min_(eta_min) {
  KILN_CHECK(t_max > 0, "CosineAnnealingLR: T_max must be positive, got ", t_max);
  set_epoch(0);
}

std::vector<double> CosineAnnealingLR::lr_at(int64_t epoch) const {
  std::vector<double> out;
  const double c = (1.0 + std::cos(std::numbers::pi * double(epoch) / double(t_max_))) / 2.0;
  for (double b : base_lrs()) out.push_back(eta_min_ + (b - eta_min_) * c);
  return out;
}

LinearLR::LinearLR(Optimizer& opt, double start_factor, double end_factor, int64_t total_iters)
    : LRScheduler(opt), start_factor_(start_factor), end_factor_(end_factor), total_iters_(total_iters) {
  KILN_CHECK(start_factor > 0.0 && start_factor <= 1.0,
             "LinearLR: Starting multiplicative factor "
             "expected to be greater than 0 and less or equal to 1, got ",
             start_factor);
  KILN_CHECK(end_factor >= 0.0 && end_factor <= 1.0,
             "LinearLR: Ending multiplicative factor "
             "expected to be between 0 and 1, got ",
             end_factor);
  KILN_CHECK(total_iters > 0, "LinearLR: total_iters must be positive, got ", total_iters);
  set_epoch(0);
}

std::vector<double> LinearLR::lr_at(int64_t epoch) const {
  const double t = double(std::min(total_iters_, epoch)) / double(total_iters_);
  std::vector<double> out;
  for (double b : base_lrs()) out.push_back(b * (start_factor_ + (end_factor_ - start_factor_) * t));
  return out;
}

// ---------------------------------------------------------------- SequentialLR

SequentialLR::SequentialLR(Optimizer& opt, std::vector<std::shared_ptr<LRScheduler>> schedulers,
                           std::vector<int64_t> milestones)
    : LRScheduler(opt), schedulers_(std::move(schedulers)), milestones_(std::move(milestones)) {
  KILN_CHECK(!schedulers_.empty(), "SequentialLR: expects at least one scheduler");
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    KILN_CHECK(schedulers_[i], "SequentialLR: scheduler ", i, " is null");
    KILN_CHECK(&schedulers_[i]->optimizer() == &opt,
               "SequentialLR: expects all schedulers to belong "
               "to the same optimizer, but scheduler ",
               i, " (", schedulers_[i]->name(), ") has another");
  }
  KILN_CHECK(milestones_.size() + 1 == schedulers_.size(),
             "SequentialLR: expects one more scheduler "
             "than milestones, got ",
             schedulers_.size(), " schedulers and ", milestones_.size(), " milestones");
  KILN_CHECK(std::is_sorted(milestones_.begin(), milestones_.end()),
             "SequentialLR: milestones must "
             "be increasing, got ",
             milestones_);
  // Each scheduler set the rates when it was built; start over from the initial rates and let
  // only the first scheduler take its initial step.
  for (auto& g : opt.param_groups()) g.options["lr"] = g.options["initial_lr"];
  schedulers_[0]->set_epoch(0);
  for (size_t i = 1; i < schedulers_.size(); ++i) schedulers_[i]->last_epoch_ -= 1;
  last_epoch_ = 0;
  last_lr_ = schedulers_[0]->get_last_lr();
}

void SequentialLR::step() {
  ++last_epoch_;
  const size_t idx =
      size_t(std::upper_bound(milestones_.begin(), milestones_.end(), last_epoch_) - milestones_.begin());
  auto& s = schedulers_[idx];
  if (idx > 0 && milestones_[idx - 1] == last_epoch_)
    s->set_epoch(0);
  else
    s->step();
  last_lr_ = s->get_last_lr();
}

std::vector<double> SequentialLR::lr_at(int64_t) const { return last_lr_; }

nlohmann::json SequentialLR::state_dict() const {
  nlohmann::json j = LRScheduler::state_dict();
  j["milestones"] = milestones_;
  j["schedulers"] = nlohmann::json::array();
  for (const auto& s : schedulers_) j["schedulers"].push_back(s->state_dict());
  return j;
}

void SequentialLR::load_state_dict(const nlohmann::json& s) {
  const detail::JsonIn in(s, "SequentialLR::load_state_dict");
  std::vector<detail::JsonIn> inner;
  if (auto list = in.find("schedulers")) inner = list->elements();
  KILN_CHECK(inner.empty() || inner.size() == schedulers_.size(),
             "SequentialLR::load_state_dict: "
             "the state has ",
             inner.size(), " schedulers, this one has ", schedulers_.size());
  LRScheduler::load_state_dict(s);
  for (size_t i = 0; i < inner.size(); ++i) schedulers_[i]->load_state_dict(inner[i].json());
}

}  // namespace kiln::optim
