// Learning-rate schedulers with PyTorch's names, defaults and values. Each computes the rate of
// an epoch in closed form from the groups' initial rates, so stepping, resuming and chaining
// them (SequentialLR) give the same numbers.
//   kiln::optim::CosineAnnealingLR sched(*optimizer, /*T_max=*/20);
//   for (int epoch = 0; epoch < 20; ++epoch) { train_one_epoch(); sched.step(); }
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "optim/optimizer.h"

namespace kiln::optim {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // Advances one epoch (or iteration) and writes the new rates into the optimizer's groups.
  virtual void step();
  // Puts the scheduler at `epoch` and writes that epoch's rates into the optimizer's groups (step()
  // is set_epoch(last_epoch() + 1)). A run resumed under a changed plan, a longer T_max say, calls
  // set_epoch(last_epoch()) after loading so the new schedule's rate applies at once.
  void set_epoch(int64_t epoch);
  // The rates written by the last step (or by construction), one per param group.
  std::vector<double> get_last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  Optimizer& optimizer() const { return optimizer_; }
  virtual std::string name() const = 0;

  // {"scheduler": name, "last_epoch": n, "base_lrs": [...], "last_lr": [...]}.
  virtual nlohmann::json state_dict() const;
  virtual void load_state_dict(const nlohmann::json& state);

 protected:
  explicit LRScheduler(Optimizer& optimizer);
  // The rate of each group at `epoch` (>= 0). Derived constructors call set_epoch(0) once their
  // settings are stored (the "initial step" of PyTorch).
  virtual std::vector<double> lr_at(int64_t epoch) const = 0;
  // Called after each set_epoch, for schedulers that also drive other options (momentum).
  virtual void after_set_epoch() {}
  void set_base_lrs(std::vector<double> lrs) { base_lrs_ = std::move(lrs); }

 private:
  Optimizer& optimizer_;
  std::vector<double> base_lrs_;
  std::vector<double> last_lr_;
  int64_t last_epoch_ = -1;
  friend class SequentialLR;
};

// lr = base * gamma^(epoch / step_size).
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  std::string name() const override { return "StepLR"; }

 protected:
  std::vector<double> lr_at(int64_t epoch) const override;
  int64_t step_size_;
  double gamma_;
};

// lr = base * gamma^(number of milestones <= epoch).
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma = 0.1);
  std::string name() const override { return "MultiStepLR"; }

 protected:
  std::vector<double> lr_at(int64_t epoch) const override;
  std::vector<int64_t> milestones_;
  double gamma_;
};

// lr = eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2 (periodic past T_max).
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0.0);
  std::string name() const override { return "CosineAnnealingLR"; }

 protected:
  std::vector<double> lr_at(int64_t epoch) const override;
  int64_t t_max_;
  double eta_min_;
};

// Scales the rate linearly from start_factor to end_factor over total_iters epochs.
class LinearLR : public LRScheduler {
 public:
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3.0, double end_factor = 1.0, int64_t total_iters = 5);
  std::string name() const override { return "LinearLR"; }

 protected:
  std::vector<double> lr_at(int64_t epoch) const override;
  double start_factor_, end_factor_;
  int64_t total_iters_;
};

struct OneCycleOptions {
  int64_t total_steps = 0;  // or epochs * steps_per_epoch
  int64_t epochs = 0;
  int64_t steps_per_epoch = 0;
  double pct_start = 0.3;
  std::string anneal_strategy = "cos";  // "cos" or "linear"
  bool cycle_momentum = true;
  double base_momentum = 0.85;
  double max_momentum = 0.95;
  double div_factor = 25.0;
  double final_div_factor = 1e4;
  bool three_phase = false;
};

// Smith's 1cycle policy, stepped once per batch: warm up to max_lr, anneal to
// max_lr / div_factor / final_div_factor, cycling momentum (or Adam's beta1) inversely.
class OneCycleLR : public LRScheduler {
 public:
  OneCycleLR(Optimizer& optimizer, double max_lr, OneCycleOptions options);
  OneCycleLR(Optimizer& optimizer, std::vector<double> max_lrs, OneCycleOptions options);
  std::string name() const override { return "OneCycleLR"; }

 protected:
  std::vector<double> lr_at(int64_t epoch) const override;
  void after_set_epoch() override;

 private:
  enum Level { kInitial, kMax, kMin };  // lr levels; momentum uses kInitial=base, kMax=max
  struct Phase {
    double end_step;
    Level lr_from, lr_to, momentum_from, momentum_to;
  };
  double anneal(double start, double end, double pct) const;
  // Where `step` falls: the phase index and the fraction of it done.
  std::pair<size_t, double> locate(int64_t step) const;

  std::vector<double> max_lrs_;
  OneCycleOptions options_;
  std::vector<Phase> phases_;
  std::string momentum_key_;  // "betas" or "momentum"
};

// Runs schedulers one after another, switching at the milestones (each restarts at its epoch 0).
class SequentialLR : public LRScheduler {
 public:
  SequentialLR(Optimizer& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
               std::vector<int64_t> milestones);
  void step() override;
  std::string name() const override { return "SequentialLR"; }
  nlohmann::json state_dict() const override;
  void load_state_dict(const nlohmann::json& state) override;

 protected:
  std::vector<double> lr_at(int64_t epoch) const override;

 private:
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
  std::vector<int64_t> milestones_;
};

}  // namespace kiln::optim
