// kiln::optim::Adam and AdamW with PyTorch's update rules: bias-corrected moments, optional
// amsgrad, L2 weight decay (Adam) or decoupled weight decay (AdamW, default 1e-2). State per
// parameter: step, exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad).
//   auto opt = std::make_shared<kiln::optim::AdamW>(model->parameters(), /*lr=*/3e-4);
#pragma once

#include <utility>

#include "optim/optimizer.h"

namespace kiln::optim {

struct AdamOptions {
  double lr = 1e-3;
  std::pair<double, double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
  bool maximize = false;
};

struct AdamWOptions {
  double lr = 1e-3;
  std::pair<double, double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
  bool maximize = false;
};

void to_json(nlohmann::json& j, const AdamOptions& o);
void from_json(const nlohmann::json& j, AdamOptions& o);

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, double lr);
  explicit Adam(std::vector<Tensor> params, AdamOptions defaults = {});
  explicit Adam(std::vector<ParamGroup> groups, AdamOptions defaults = {});
  bool step_unless_found_inf(const Tensor& found_inf) override;
  std::string name() const override { return decoupled_ ? "AdamW" : "Adam"; }

 protected:
  void update() override;
  Adam(std::vector<ParamGroup> groups, AdamOptions defaults, bool decoupled);
  void check_options(const nlohmann::json& options) const override;
  bool tracks_step() const override { return true; }

 private:
  void apply_update(const Tensor* found_inf);
  bool decoupled_ = false;
};

class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, double lr);
  explicit AdamW(std::vector<Tensor> params, AdamWOptions defaults = {});
  explicit AdamW(std::vector<ParamGroup> groups, AdamWOptions defaults = {});
};

}  // namespace kiln::optim
