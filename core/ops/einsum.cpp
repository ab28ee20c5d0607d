// einsum: parses the equation into integer labels (letters, and one label per dim covered by
// "...", aligned from the right), takes diagonals for labels repeated within an operand, sums out
// labels no one else needs, then contracts the operands left to right: each pair becomes one bmm
// of [batch, left-only, contracted] by [batch, contracted, right-only]. Everything is built from
// differentiable ops, so the gradient comes with it.
#include <algorithm>
#include <cctype>
#include <functional>
#include <map>

#include "core/ops/internal.h"

namespace kiln {
namespace {

using Labels = std::vector<int>;
constexpr int kEllipsisBase = 1000;  // labels of the dims "..." covers: 1000, 1001, ...

struct Term {
  Labels labels;  // one per dim
  bool has_ellipsis = false;
};

[[noreturn]] void bad(const std::string& eq, const std::string& why) { fail("einsum: equation \"", eq, "\" ", why); }

// Parses one term of an operand with ndim dims (or the output term), splicing in the labels of
// the dims "..." covers, right-aligned against the widest operand's max_ellipsis.
Term parse_term(const std::string& eq, const std::string& t, int64_t ndim, int64_t max_ellipsis, bool output) {
  Term term;
  int64_t explicit_count = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '.') {
      if (term.has_ellipsis || t.compare(i, 3, "...") != 0) bad(eq, "has a malformed or repeated \"...\"");
      term.has_ellipsis = true;
      i += 2;
    } else if (std::isalpha(static_cast<unsigned char>(t[i]))) {
      ++explicit_count;
    } else {
      bad(eq, std::string("contains '") + t[i] + "'; labels are letters");
    }
  }
  int64_t ell = 0;
  if (!output) {
    ell = ndim - explicit_count;
    if (ell < 0 || (!term.has_ellipsis && ell != 0))
      bad(eq, "names " + std::to_string(explicit_count) + " dims in \"" + t + "\" for an operand of " +
                  std::to_string(ndim) + " dims");
  } else {
    ell = term.has_ellipsis ? max_ellipsis : 0;
  }
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '.') {
      for (int64_t k = 0; k < ell; ++k) term.labels.push_back(int(kEllipsisBase + max_ellipsis - ell + k));
      i += 2;
    } else {
      term.labels.push_back(int(t[i]));
    }
  }
  return term;
}

int64_t count(const Labels& l, int label) { return std::count(l.begin(), l.end(), label); }
bool has(const Labels& l, int label) { return count(l, label) > 0; }

// x with labels l: the diagonal of every label that repeats.
Tensor take_diagonals(Tensor x, Labels& l) {
  for (size_t p = 0; p < l.size(); ++p) {
    for (size_t q = p + 1; q < l.size();) {
      if (l[q] != l[p]) {
        ++q;
        continue;
      }
      const int64_t n = x.size(int64_t(p));
      KILN_CHECK(x.size(int64_t(q)) == n, "einsum: label '", char(l[p]), "' repeats with sizes ", n, " and ",
                 x.size(int64_t(q)));
      Tensor r = arange(double(n), {.dtype = DType::i64, .device = x.device()});
      Shape sp(size_t(x.dim()), 1), sq(size_t(x.dim()), 1);
      sp[p] = n;
      sq[q] = n;
      Tensor eye = eq(r.reshape(sp), r.reshape(sq)).to(x.dtype());
      x = sum(mul(x, eye), {int64_t(q)});
      l.erase(l.begin() + int64_t(q));
    }
  }
  return x;
}

// Sums x over the labels `keep` rejects.
Tensor sum_unneeded(Tensor x, Labels& l, const std::function<bool(int)>& keep) {
  Shape dims;
  Labels kept;
  for (size_t i = 0; i < l.size(); ++i) {
    if (keep(l[i]))
      kept.push_back(l[i]);
    else
      dims.push_back(int64_t(i));
  }
  if (!dims.empty()) x = sum(x, dims);
  l = kept;
  return x;
}

// x permuted so its labels come in `order` (a permutation of l).
Tensor arrange(const Tensor& x, const Labels& l, const Labels& order) {
  Shape perm;
  for (int lab : order) perm.push_back(int64_t(std::find(l.begin(), l.end(), lab) - l.begin()));
  return x.permute(perm);
}

int64_t size_of(const Tensor& x, const Labels& l, int label) {
  return x.size(int64_t(std::find(l.begin(), l.end(), label) - l.begin()));
}

// Contracts (a, la) with (b, lb), keeping the labels `needed` accepts.
Tensor contract(Tensor a, Labels& la, Tensor b, Labels lb, const std::function<bool(int)>& needed,
                const std::string& eq) {
  a = sum_unneeded(a, la, [&](int x) { return has(lb, x) || needed(x); });
  b = sum_unneeded(b, lb, [&](int x) { return has(la, x) || needed(x); });
  Labels batch, contracted, a_only, b_only;
  for (int x : la) {
    if (has(lb, x))
      (needed(x) ? batch : contracted).push_back(x);
    else
      a_only.push_back(x);
  }
  for (int x : lb)
    if (!has(la, x)) b_only.push_back(x);
  // Shared labels broadcast from size 1.
  std::map<int, int64_t> size;
  for (int x : la) size[x] = size_of(a, la, x);
  for (int x : lb) {
    const int64_t s = size_of(b, lb, x);
    if (size.count(x) && size[x] != s && size[x] != 1 && s != 1)
      bad(eq, "gives label '" + std::string(1, char(x < 256 ? x : '.')) + "' the sizes " + std::to_string(size[x]) +
                  " and " + std::to_string(s));
    size[x] = std::max(size.count(x) ? size[x] : 1, s);
  }
  auto prod = [&](const Labels& ls) {
    int64_t p = 1;
    for (int x : ls) p *= size[x];
    return p;
  };
  auto expanded = [&](const Tensor& t, const Labels& l, const Labels& order) {
    Tensor p = arrange(t, l, order);
    Shape s;
    for (int x : order) s.push_back(size[x]);
    return p.expand(s);
  };
  Labels ao = batch, bo = batch;
  ao.insert(ao.end(), a_only.begin(), a_only.end());
  ao.insert(ao.end(), contracted.begin(), contracted.end());
  bo.insert(bo.end(), contracted.begin(), contracted.end());
  bo.insert(bo.end(), b_only.begin(), b_only.end());
  Tensor a3 = expanded(a, la, ao).reshape({prod(batch), prod(a_only), prod(contracted)});
  Tensor b3 = expanded(b, lb, bo).reshape({prod(batch), prod(contracted), prod(b_only)});
  Tensor r = bmm(a3, b3);
  Shape rs;
  Labels rl = batch;
  rl.insert(rl.end(), a_only.begin(), a_only.end());
  rl.insert(rl.end(), b_only.begin(), b_only.end());
  for (int x : rl) rs.push_back(size[x]);
  la = rl;
  return r.reshape(rs);
}

}  // namespace

Tensor einsum(const std::string& equation, const std::vector<Tensor>& operands) {
  std::string eq;
  for (char c : equation)
    if (c != ' ') eq.push_back(c);
  KILN_CHECK(!operands.empty(), "einsum: expected at least one operand");
  const size_t arrow = eq.find("->");
  const std::string lhs = eq.substr(0, arrow);
  std::vector<std::string> terms;
  for (size_t start = 0;;) {
    size_t comma = lhs.find(',', start);
    terms.push_back(lhs.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (terms.size() != operands.size())
    bad(equation, "has " + std::to_string(terms.size()) + " operand terms but " + std::to_string(operands.size()) +
                      " operands were given");
  // How many dims "..." covers in the widest operand.
  int64_t max_ell = 0;
  for (size_t i = 0; i < terms.size(); ++i) {
    int64_t letters = 0;
    for (char c : terms[i]) letters += std::isalpha(static_cast<unsigned char>(c)) ? 1 : 0;
    if (terms[i].find("...") != std::string::npos) max_ell = std::max(max_ell, operands[i].dim() - letters);
  }
  std::vector<Labels> labels;
  bool any_ellipsis = false;
  for (size_t i = 0; i < terms.size(); ++i) {
    Term t = parse_term(equation, terms[i], operands[i].dim(), max_ell, false);
    any_ellipsis = any_ellipsis || t.has_ellipsis;
    labels.push_back(t.labels);
  }
  Labels out;
  if (arrow != std::string::npos) {
    Term t = parse_term(equation, eq.substr(arrow + 2), 0, max_ell, true);
    out = t.labels;
    for (int x : out) {
      if (count(out, x) > 1) bad(equation, "repeats a label in its output");
      bool found = false;
      for (const Labels& l : labels) found = found || has(l, x);
      if (!found && x < kEllipsisBase)
        bad(equation, "has output label '" + std::string(1, char(x)) + "' that no operand has");
    }
  } else {  // implicit: the ellipsis dims, then the letters that appear once, in ASCII order
    for (int64_t k = 0; any_ellipsis && k < max_ell; ++k) out.push_back(int(kEllipsisBase + k));
    std::map<int, int> seen;
    for (const Labels& l : labels)
      for (int x : l)
        if (x < kEllipsisBase) ++seen[x];
    for (auto [x, n] : seen)
      if (n == 1) out.push_back(x);
  }
  // Diagonals, then labels that only one operand has and the output does not.
  std::vector<Tensor> xs;
  for (size_t i = 0; i < operands.size(); ++i) xs.push_back(take_diagonals(operands[i], labels[i]));
  Tensor acc = xs[0];
  Labels acc_l = labels[0];
  auto needed_after = [&](size_t i) {  // by the output or by an operand after i
    return [&, i](int x) {
      if (has(out, x)) return true;
      for (size_t j = i + 1; j < labels.size(); ++j)
        if (has(labels[j], x)) return true;
      return false;
    };
  };
  if (operands.size() == 1) acc = sum_unneeded(acc, acc_l, needed_after(0));
  for (size_t i = 1; i < xs.size(); ++i) acc = contract(acc, acc_l, xs[i], labels[i], needed_after(i), equation);
  return arrange(acc, acc_l, out);
}

}  // namespace kiln
