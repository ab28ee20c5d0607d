// Callbacks, as Lightning Fabric's: objects with named hooks that fabric.call("name", args...)
// runs, in the order the callbacks were given. A callback without the hook is skipped. Arguments
// are passed by value (pass shared_ptrs for objects the hook may change); numbers convert to the
// hook's numeric parameter types, and any other mismatch is an error naming the hook.
//   struct Printer : kiln::Callback {
//     Printer() { on("on_train_epoch_end", [](int64_t epoch, double loss) { std::cout << epoch << " " << loss; }); }
//   };
//   kiln::Fabric fabric({.callbacks = {std::make_shared<Printer>()}});
//   fabric.call("on_train_epoch_end", epoch, loss);
#pragma once

#include <any>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "core/error.h"

namespace kiln {
namespace detail {

std::string type_name(const std::type_info& t);

// The parameter types of a callable with one non-template operator() (a lambda) or of a function.
template <class F>
struct callable_args : callable_args<decltype(&F::operator())> {};
template <class C, class R, class... A>
struct callable_args<R (C::*)(A...) const> {
  using type = std::tuple<A...>;
};
template <class C, class R, class... A>
struct callable_args<R (C::*)(A...)> {
  using type = std::tuple<A...>;
};
template <class R, class... A>
struct callable_args<R (*)(A...)> {
  using type = std::tuple<A...>;
};
template <class R, class... A>
struct callable_args<R(A...)> {
  using type = std::tuple<A...>;
};

// `a` as a T: the type itself, a number converted to a numeric T, or a C string to std::string.
template <class T>
bool any_as(const std::any& a, T& out) {
  if (auto p = std::any_cast<T>(&a)) {
    out = *p;
    return true;
  }
  if constexpr (std::is_arithmetic_v<T>) {
    auto try_num = [&](auto tag) {
      using N = decltype(tag);
      if (auto p = std::any_cast<N>(&a)) {
        out = static_cast<T>(*p);
        return true;
      }
      return false;
    };
    return try_num(int()) || try_num(long()) || try_num((long long)0) || try_num(unsigned()) ||
           try_num((unsigned long)0) || try_num((unsigned long long)0) || try_num(float()) || try_num(double()) ||
           try_num(bool()) || try_num(short()) || try_num(char());
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (auto p = std::any_cast<const char*>(&a)) {
      out = *p;
      return true;
    }
  }
  return false;
}

}  // namespace detail

class Callback {
 public:
  virtual ~Callback() = default;

  bool has(const std::string& hook) const { return hooks_.count(hook) > 0; }
  // Runs the hook with `args`; false when this callback has no hook of that name.
  template <class... Args>
  bool call(const std::string& hook, Args&&... args) {
    auto it = hooks_.find(hook);
    if (it == hooks_.end()) return false;
    std::vector<std::any> packed{std::any(std::decay_t<Args>(std::forward<Args>(args)))...};
    it->second(hook, packed);
    return true;
  }

 protected:
  // Registers `fn` as the hook `hook` (replacing an earlier one of that name). Its parameters
  // are values or const references.
  template <class F>
  void on(const std::string& hook, F fn) {
    using Params = typename detail::callable_args<std::remove_pointer_t<std::decay_t<F>>>::type;
    hooks_[hook] = [fn = std::move(fn)](const std::string& name, std::vector<std::any>& args) mutable {
      invoke(fn, name, args, std::type_identity<Params>{}, std::make_index_sequence<std::tuple_size_v<Params>>{});
    };
  }

 private:
  template <class F, class... P, size_t... I>
  static void invoke(F& fn, const std::string& name, std::vector<std::any>& args, std::type_identity<std::tuple<P...>>,
                     std::index_sequence<I...>) {
    static_assert(((!std::is_lvalue_reference_v<P> || std::is_const_v<std::remove_reference_t<P>>)&&...),
                  "Callback::on: hook parameters must be values or const references");
    KILN_CHECK(args.size() == sizeof...(P), "fabric.call(\"", name, "\"): the hook takes ", sizeof...(P),
               " arguments, got ", args.size());
    std::tuple<std::decay_t<P>...> values;
    auto check = [&](size_t i, bool ok, const std::type_info& want) {
      KILN_CHECK(ok, "fabric.call(\"", name, "\"): argument ", i + 1, " is a ", detail::type_name(args[i].type()),
                 " but the hook takes a ", detail::type_name(want));
    };
    (check(I, detail::any_as(args[I], std::get<I>(values)), typeid(std::decay_t<P>)), ...);
    fn(std::get<I>(values)...);
  }

  std::map<std::string, std::function<void(const std::string&, std::vector<std::any>&)>> hooks_;
};

}  // namespace kiln
