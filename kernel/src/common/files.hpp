// Files that hold secrets or records: created so that nobody else's link or file is written
// through, with the mode the data needs whatever the umask.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string_view>

namespace kiln::common {

// Writes `bytes` to `file`, which must not exist yet, with mode `mode`: into a temporary file
// beside it created exclusively (O_EXCL | O_NOFOLLOW — never through a link placed there),
// synced, then linked to its name (link(2) refuses a name that exists, so a file that appeared
// meanwhile is not replaced) and the temporary removed. Creates the directory. Throws
// std::runtime_error naming the file and the reason.
void write_new_file(const std::filesystem::path& file, std::string_view bytes, mode_t mode);

// Writes `bytes` to `file` whole or not at all, replacing it, with mode `mode`: into a temporary
// file beside it (`FILE.tmp-…`, created exclusively), synced, renamed over `file`, and the
// directory synced — after a crash or power cut the file is the old one or the new one, never a
// part. Creates the directory. Throws std::runtime_error naming the file and the reason.
void replace_file(const std::filesystem::path& file, std::string_view bytes, mode_t mode);

// Gives the file `from` the name `to` unless `to` exists (never replacing it), then syncs the
// directory: link(2) and unlink; on a filesystem without hard links rename(2) with
// RENAME_NOREPLACE; where neither is supported (some network filesystems), rename after
// checking. Throws std::runtime_error naming `to` ("exists; it is never overwritten").
void name_new_file(const std::filesystem::path& from, const std::filesystem::path& to);

// Syncs a directory, so that the names created, renamed or removed in it survive a power cut.
// Throws std::runtime_error naming it.
void sync_directory(const std::filesystem::path& dir);

// Opens `file` for writing, replacing its contents, with mode `mode`; refuses to write through a
// symbolic link (O_NOFOLLOW). Returns the descriptor; throws std::runtime_error naming the file.
int open_output_file(const std::filesystem::path& file, mode_t mode);

}  // namespace kiln::common
