#include "services/agentd/failover.h"

#include <algorithm>
#include <cmath>

namespace shoal::agentd {

Millis Backoff::next() {
  Millis wait = current_;
  current_ = std::min(kMax, current_ * 2);
  return wait;
}

Millis failoverWait(Millis backoff, Nanos period, std::optional<Nanos> sinceLastHeartbeat) {
  if (!sinceLastHeartbeat || *sinceLastHeartbeat >= 3 * period) return backoff;
  Millis cap = std::max(Backoff::kFirst, std::chrono::duration_cast<Millis>(period / 4));
  return std::min(backoff, cap);
}

const node::Manager* ManagerRotation::current() const {
  if (managers_.empty()) return nullptr;
  return &managers_[index_ % managers_.size()];
}

void ManagerRotation::advance() {
  if (!managers_.empty()) index_ = (index_ + 1) % managers_.size();
}

void ManagerRotation::redirectTo(const node::Manager& leader) {
  auto it = std::find_if(managers_.begin(), managers_.end(), [&](const node::Manager& m) {
    return m.addr == leader.addr && m.publicKey == leader.publicKey;
  });
  if (it == managers_.end()) {
    managers_.push_back(leader);
    it = managers_.end() - 1;
  }
  index_ = static_cast<size_t>(it - managers_.begin());
}

bool sameManagers(const std::vector<node::Manager>& a, const std::vector<node::Manager>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const node::Manager& x, const node::Manager& y) {
                      return x.nodeId == y.nodeId && x.addr == y.addr &&
                             x.publicKey == y.publicKey;
                    });
}

bool ManagerRotation::replace(std::vector<node::Manager> managers) {
  if (sameManagers(managers, managers_)) return false;
  const node::Manager* now = current();
  size_t keep = 0;
  if (now) {
    for (size_t i = 0; i < managers.size(); ++i)
      if (managers[i].addr == now->addr && managers[i].publicKey == now->publicKey) {
        keep = i;
        break;
      }
  }
  managers_ = std::move(managers);
  index_ = keep;
  return true;
}

Millis heartbeatDelay(Nanos period, double unit) {
  unit = std::clamp(unit, 0.0, 1.0);
  double ms = std::chrono::duration<double, std::milli>(period).count() * (0.9 + 0.2 * unit);
  return Millis(static_cast<int64_t>(std::llround(ms)));
}

Millis heartbeatTimeout(Nanos period) {
  return std::clamp(std::chrono::duration_cast<Millis>(period), Millis(1000), Millis(10000));
}

Nanos sanePeriod(int64_t periodNs) {
  Nanos p(periodNs);
  if (p < Millis(100) || p > std::chrono::hours(1)) return std::chrono::seconds(5);
  return p;
}

}  // namespace shoal::agentd
