#include "weights-convert/interrupt_cleanup.h"

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>
#include <pthread.h>
#include <unistd.h>

namespace seaopt::convert {

namespace {

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};

// The handler reads these; `armed` is set only after `path` is complete, and cleared before the slot is reused.
struct Slot {
    std::atomic<bool> taken{false};
    std::atomic<bool> armed{false};
    char path[PATH_MAX];
};
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs lock-free flags");
constexpr int kSlots = 4;
Slot g_slots[kSlots];

extern "C" void remove_temporaries_and_reraise(int sig) {
    const int saved_errno = errno;
    for (Slot &s : g_slots) {
        if (s.armed.load(std::memory_order_acquire)) ::unlink(s.path);
    }
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(sig, &dfl, nullptr);
    // Pending while this handler runs (the signal is blocked in it); delivered with the default action on return.
    ::raise(sig);
    errno = saved_errno;
}

sigset_t interrupt_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : kSignals) sigaddset(&set, sig);
    return set;
}

}  // namespace

void install_interrupt_cleanup() {
    for (int sig : kSignals) {
        struct sigaction old;
        if (::sigaction(sig, nullptr, &old) != 0) continue;
        if (old.sa_handler == SIG_IGN) continue;  // e.g. nohup's SIGHUP: the user asked not to be ended by it
        struct sigaction sa;
        std::memset(&sa, 0, sizeof sa);
        sa.sa_handler = remove_temporaries_and_reraise;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        ::sigaction(sig, &sa, nullptr);
    }
}

RemoveOnInterrupt::RemoveOnInterrupt(const std::string &path) {
    if (path.empty() || path.size() >= PATH_MAX) return;
    for (int i = 0; i < kSlots; ++i) {
        bool expected = false;
        if (!g_slots[i].taken.compare_exchange_strong(expected, true)) continue;
        std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
        g_slots[i].armed.store(true, std::memory_order_release);
        slot_ = i;
        return;
    }
}

RemoveOnInterrupt::~RemoveOnInterrupt() {
    if (slot_ < 0) return;
    g_slots[slot_].armed.store(false, std::memory_order_release);
    g_slots[slot_].taken.store(false, std::memory_order_release);
}

DeferInterrupts::DeferInterrupts() {
    const sigset_t set = interrupt_signals();
    active_ = ::pthread_sigmask(SIG_BLOCK, &set, &old_) == 0;
}

void DeferInterrupts::release() {
    if (!active_) return;
    active_ = false;
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);  // a deferred signal is delivered here
}

void write_gguf_guarded(const gguf::Writer &writer, const std::string &path, const gguf::Writer::TensorDataFn &data) {
    std::optional<RemoveOnInterrupt> guard;
    DeferInterrupts defer;  // from before the writer's mkstemp until the guard exists
    writer.write(path, data, [&](const std::string &tmp) {
        guard.emplace(tmp);
        defer.release();
    });
}

}  // namespace seaopt::convert
