// Sandbox ids name their node: "sbx-<node>-<12 hex digits>", so that any scheduler replica
// routes a call to the owning node without shared state.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace swissbox {

// Lowercase letters, digits and '-', 5 to 128 characters, "sbx-" first.
bool valid_sandbox_id(std::string_view id);
// The node part of ids made on a node of this name (lowercased, other characters '-',
// at most 40 characters).
std::string sandbox_id_node(std::string_view node_name);
// A fresh id for that node, 48 bits from getrandom(2) each.
std::string new_sandbox_id(std::string_view node_name);
// `bytes` random bytes from getrandom(2), as lowercase hex (ids, tokens).
std::string random_hex(size_t bytes);
// The node part of an id; nullopt when the id is not one.
std::optional<std::string> node_of_sandbox_id(std::string_view id);

}  // namespace swissbox
