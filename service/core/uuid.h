#pragma once

#include <string>

#include "core/random.h"

namespace floodgate::core {

/// A random (version 4, RFC 9562) UUID in its 36-character lower-case text form, drawn from
/// `random` (three draws; deterministic with a scripted source in tests).
std::string new_uuid(Random& random);

}  // namespace floodgate::core
