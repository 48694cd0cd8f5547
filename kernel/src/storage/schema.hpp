// The kernel's database schema, as ordered migrations (docs/architecture/storage.md).
#pragma once

#include <vector>

#include "storage/sqlite.hpp"

namespace kiln::storage {

const std::vector<Migration>& kernel_migrations();

}  // namespace kiln::storage
