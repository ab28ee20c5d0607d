// OneCycleLR: piecewise annealing between three rate levels (initial = max / div_factor, max,
// min = initial / final_div_factor), with momentum cycled the opposite way, as PyTorch does it.
#include <cmath>
#include <numbers>

#include "optim/lr_scheduler.h"

namespace kiln::optim {

OneCycleLR::OneCycleLR(Optimizer& opt, double max_lr, OneCycleOptions o)
    : OneCycleLR(opt, std::vector<double>(opt.param_groups().size(), max_lr), std::move(o)) {}

OneCycleLR::OneCycleLR(Optimizer& opt, std::vector<double> max_lrs, OneCycleOptions o)
    : LRScheduler(opt), max_lrs_(std::move(max_lrs)), options_(std::move(o)) {
  auto& t = options_.total_steps;
  if (t <= 0) {
    KILN_CHECK(t == 0 && options_.epochs > 0 && options_.steps_per_epoch > 0,
               "OneCycleLR: You must "
               "define either total_steps OR (epochs AND steps_per_epoch) as positive integers, got "
               "total_steps ",
               t, ", epochs ", options_.epochs, ", steps_per_epoch ", options_.steps_per_epoch);
    t = options_.epochs * options_.steps_per_epoch;
  }
  KILN_CHECK(options_.pct_start >= 0.0 && options_.pct_start <= 1.0,
             "OneCycleLR: Expected float "
             "between 0 and 1 pct_start, but got ",
             options_.pct_start);
  KILN_CHECK(options_.anneal_strategy == "cos" || options_.anneal_strategy == "linear",
             "OneCycleLR: "
             "anneal_strategy must be one of \"cos\" or \"linear\", instead got \"",
             options_.anneal_strategy, "\"");
  KILN_CHECK(max_lrs_.size() == opt.param_groups().size(), "OneCycleLR: expected ", opt.param_groups().size(),
             " values for max_lr, got ", max_lrs_.size());
  const double p = options_.pct_start * double(t);
  if (options_.three_phase) {
    phases_ = {{p - 1, kInitial, kMax, kMax, kInitial},
               {2 * p - 2, kMax, kInitial, kInitial, kMax},
               {double(t) - 1, kInitial, kMin, kMax, kMax}};
  } else {
    phases_ = {{p - 1, kInitial, kMax, kMax, kInitial}, {double(t) - 1, kMax, kMin, kInitial, kMax}};
  }
  if (options_.cycle_momentum) {
    const auto& d = opt.defaults();
    KILN_CHECK(d.contains("betas") || d.contains("momentum"), "OneCycleLR: optimizer ", opt.name(),
               " must support momentum or beta1 with cycle_momentum enabled");
    momentum_key_ = d.contains("betas") ? "betas" : "momentum";
  }
  std::vector<double> initial;
  auto& groups = opt.param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    initial.push_back(max_lrs_[i] / options_.div_factor);
    groups[i].options["initial_lr"] = initial.back();
  }
  set_base_lrs(std::move(initial));
  set_epoch(0);
}

double OneCycleLR::anneal(double start, double end, double pct) const {
  if (options_.anneal_strategy == "linear") return (end - start) * pct + start;
  return end + (start - end) / 2.0 * (std::cos(std::numbers::pi * pct) + 1.0);
}

std::pair<size_t, double> OneCycleLR::locate(int64_t step) const {
  KILN_CHECK(step <= options_.total_steps, "OneCycleLR: tried to step ", step,
             " times; the "
             "specified number of total steps is ",
             options_.total_steps);
  double start = 0.0;
  for (size_t i = 0; i < phases_.size(); ++i) {
    const double end = phases_[i].end_step;
    if (double(step) <= end || i + 1 == phases_.size()) return {i, (double(step) - start) / (end - start)};
    start = end;
  }
  return {phases_.size() - 1, 1.0};
}

std::vector<double> OneCycleLR::lr_at(int64_t epoch) const {
  auto [i, pct] = locate(epoch);
  const Phase& ph = phases_[i];
  std::vector<double> out;
  for (double max_lr : max_lrs_) {
    const double initial = max_lr / options_.div_factor;
    const double levels[3] = {initial, max_lr, initial / options_.final_div_factor};
    out.push_back(anneal(levels[ph.lr_from], levels[ph.lr_to], pct));
  }
  return out;
}

void OneCycleLR::after_set_epoch() {
  if (!options_.cycle_momentum) return;
  auto [i, pct] = locate(last_epoch());
  const Phase& ph = phases_[i];
  auto level = [&](Level l) { return l == kMax ? options_.max_momentum : options_.base_momentum; };
  const double m = anneal(level(ph.momentum_from), level(ph.momentum_to), pct);
  for (auto& g : optimizer().param_groups()) {
    if (momentum_key_ == "betas")
      g.options["betas"][0] = m;
    else
      g.options["momentum"] = m;
  }
}

}  // namespace kiln::optim
