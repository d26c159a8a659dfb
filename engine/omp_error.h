// An exception must not leave an OpenMP region: the runtime would call std::terminate, and the library must return
// an error instead (README: it never aborts on a reachable condition). Region bodies that can throw — in practice a
// std::bad_alloc from per-thread scratch under memory exhaustion — run through OmpFirstError::run, which keeps the
// first exception; the caller rethrows it after the region.
#pragma once

#include <exception>
#include <mutex>

namespace seaopt {

class OmpFirstError {
public:
    template <typename Body>
    void run(Body &&body) noexcept {
        try {
            body();
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) error_ = std::current_exception();
        }
    }
    // After the region: throws the kept exception, if any.
    void rethrow() const {
        if (error_) std::rethrow_exception(error_);
    }

private:
    std::mutex mutex_;
    std::exception_ptr error_;
};

}  // namespace seaopt
