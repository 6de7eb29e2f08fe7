#include "last_error.h"

namespace exodus {

std::string& last_error() {
    static thread_local std::string text;
    return text;
}

int32_t fail(int32_t code, const std::string& message) {
    last_error() = message;
    return code;
}

int32_t fail(int32_t code, const char* fn, const std::string& what) {
    return fail(code, std::string(fn) + ": " + what);
}

}  // namespace exodus
