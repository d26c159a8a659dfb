// Removing a tool's half-written output when a signal ends it. The writers delete their temporary file on every
// error, but SIGINT, SIGTERM, SIGHUP and SIGPIPE end a process without unwinding its stack, and a GB-sized
// "OUT.tmp.XXXXXX" would stay behind. The tools install a handler that unlinks the guarded temporaries (their paths
// kept in static buffers: unlink is async-signal-safe, the heap is not), then restores the signal's default action
// and raises it again, so the process still ends by that signal.
#pragma once

#include <csignal>
#include <string>

#include "model/gguf.h"

namespace seaopt::convert {

// Installs the handler for SIGINT, SIGTERM, SIGHUP and SIGPIPE (a signal that is ignored stays ignored). The tools'
// main calls it once; without it the guards below only record their paths.
void install_interrupt_cleanup();

// While it lives, `path` is unlinked if one of those signals arrives. A few may live at once; an empty path, or one
// longer than PATH_MAX, is not guarded.
class RemoveOnInterrupt {
public:
    explicit RemoveOnInterrupt(const std::string &path);
    ~RemoveOnInterrupt();
    RemoveOnInterrupt(const RemoveOnInterrupt &) = delete;
    RemoveOnInterrupt &operator=(const RemoveOnInterrupt &) = delete;

private:
    int slot_ = -1;
};

// Blocks those signals in the calling thread until release() or destruction, so that one arriving between the
// creation of a temporary file and its guard waits until the guard exists.
class DeferInterrupts {
public:
    DeferInterrupts();
    ~DeferInterrupts() { release(); }
    void release();
    DeferInterrupts(const DeferInterrupts &) = delete;
    DeferInterrupts &operator=(const DeferInterrupts &) = delete;

private:
    sigset_t old_;
    bool active_ = false;
};

// gguf::Writer::write with its temporary file guarded from the moment the writer creates it (its on_temporary
// callback); the signals are deferred from before that creation until the guard exists.
void write_gguf_guarded(const gguf::Writer &writer, const std::string &path, const gguf::Writer::TensorDataFn &data);

}  // namespace seaopt::convert
