// kiln::optim::SGD: stochastic gradient descent with PyTorch's momentum, dampening, Nesterov and
// (L2) weight decay rules; state "momentum_buffer" per parameter when momentum is on.
//   kiln::optim::SGD opt(model->parameters(), {.lr = 0.1, .momentum = 0.9, .nesterov = true});
#pragma once

#include "optim/optimizer.h"

namespace kiln::optim {

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
};
void to_json(nlohmann::json& j, const SGDOptions& o);
void from_json(const nlohmann::json& j, SGDOptions& o);

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, double lr);
  explicit SGD(std::vector<Tensor> params, SGDOptions defaults = {});
  explicit SGD(std::vector<ParamGroup> groups, SGDOptions defaults = {});
  bool step_unless_found_inf(const Tensor& found_inf) override;
  std::string name() const override { return "SGD"; }

 protected:
  void update() override;
  void check_options(const nlohmann::json& options) const override;

 private:
  void apply_update(const Tensor* found_inf);
};

}  // namespace kiln::optim
