// The calling thread's last error message: one per library (each library compiles last_error.cpp,
// and hidden visibility keeps the copies apart), written by every algorithm's entry points and
// read through the library's exported last_error().
#pragma once

#include <cstdint>
#include <string>

namespace exodus {

std::string& last_error();

// Records `message` as the calling thread's last error and returns `code` (an EXODUS_ERR_*).
int32_t fail(int32_t code, const std::string& message);

// The same for a failure of the entry point `fn`: "fn: what".
int32_t fail(int32_t code, const char* fn, const std::string& what);

}  // namespace exodus
