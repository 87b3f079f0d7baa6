#pragma once
// --format for shoal's listings and inspects (DESIGN.md §11): the part of Go's text/template that
// docker users write, evaluated against JSON objects whose keys are docker's field names, so that
// scripts written for `docker node ls --format '{{.Hostname}}'` or
// `docker node inspect --format '{{.Status.State}}'` run unchanged against shoal.
//
// The language is Go's text/template; the functions, `table` and `json` are docker's
// (github.com/docker/cli: templates/templates.go, cli/command/formatter/formatter.go,
// cli/command/inspect/inspector.go). Supported:
//   text, {{.}}, {{.A.B}}, {{$}}, {{$x := ...}}, {{$x = ...}}, {{$x.A}}, pipelines {{.X | f}},
//   parenthesised pipelines {{(f .X).A}}, {{if}}/{{else if}}/{{else}}/{{end}}, {{with}}/{{else with}},
//   {{range}} over lists and maps (sorted keys, one or two variables, {{else}}, {{break}},
//   {{continue}}), {{- and -}} trimming, {{/* comments */}}, string (both quotings, Go's escapes),
//   number (decimal, hex, `_`, floats), char, bool and nil literals; Go's functions and, or, not,
//   len, index, print, printf, println, eq, ne, lt, le, gt, ge; docker's json, split, join, title,
//   lower, upper, pad, truncate. printf knows %v %s %d %q %x %X %f %F %e %E %t %c %%, the flags
//   - + 0 and space, width and precision, and writes Go's %!d(string=x), %!d(MISSING), %!(EXTRA ...).
// Not supported: define/template/block, html, js, urlquery, call, slice, range over an integer,
// printf's `*` width, %T, %g, %b, %o, %U and the # flag, %q of a non-string, 0b/0o number
// literals, and Unicode case mapping (upper/lower/title change ASCII only).
//
// Where JSON cannot behave like docker's typed Go structs, shoal chooses:
//  - A key that is not there prints `<no value>`, as Go does for maps (docker prints it for
//    `{{.Spec.Labels.missing}}`); so does null. Docker would refuse an unknown struct field
//    instead, so rows should carry every field docker has, "" rather than absent.
//  - Functions that take a string, list or map (upper, join, len, index, ...) read a missing or
//    null value as the empty one, as docker's zero values read.
//  - `index` of a key that is not there is "", as for docker's map[string]string labels.
//  - Numbers print as integers when integral: JSON does not say int or float64.
//  - eq/ne compare numbers by value whatever their JSON form, and null (missing) is equal only to
//    null, so `{{if eq .Missing "x"}}` is false where Go would stop with an error.
// Positions in errors are line:column, both counted from 1 (columns in bytes); a table's positions
// count from after `table `, as docker parses it. Nesting deeper than 100 is an error, not a crash.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace shoal::cli {

// A table's column titles by field path ("ID", "ManagerStatus", "Status.State"), as docker's
// formatters declare them. A path not listed gets defaultHeader(path).
using Headers = std::map<std::string, std::string, std::less<>>;

// Docker's listings read `\t` and `\n` written in the format as a tab and a newline; inspect
// formats do not (formatter.go preFormat vs inspector.go). Shoal reads them in text only:
// inside an action Go's own string escapes already give the same characters.
enum class TextEscapes { Interpret, Keep };

class Template {
 public:
  struct Tree;

  static Result<Template> parse(std::string_view text, TextEscapes escapes = TextEscapes::Interpret);

  // One object through the template, as Go's Execute: text and printed values, nothing added.
  Result<std::string> render(const nlohmann::json& dot) const;

  // The template's header row: every field path prints its header, and docker's header
  // functions (json, split, join, title, lower, upper, truncate) pass their first argument
  // through. `index X "key"` prints the key's header and a {{range}} prints its pipeline's
  // header once, where docker would stop with a broken header. Errors end the header quietly,
  // as docker ignores them.
  std::string renderHeader(const Headers& headers) const;

 private:
  explicit Template(std::shared_ptr<const Tree> tree) : tree_(std::move(tree)) {}
  std::shared_ptr<const Tree> tree_;
};

// `table ...`: the header row, then one row per object, aligned by alignColumns.
Result<std::string> renderTable(const Template& row, const std::vector<nlohmann::json>& rows,
                                const Headers& headers = {});

// Docker's tabwriter.NewWriter(out, 10, 1, 3, ' ', 0): tab-terminated cells line up in columns
// as wide as their widest cell plus 3, and at least 10; a line's last cell is not a column.
std::string alignColumns(std::string_view text);

// "ManagerStatus" → "MANAGER STATUS", "TLSStatus" → "TLS STATUS", "Status.State" → "STATUS STATE".
std::string defaultHeader(std::string_view fieldPath);

// JSON as Go's encoding/json writes it (keys sorted, no HTML escaping, floats in Go's form);
// indent > 0 indents like json.MarshalIndent(v, "", "    ").
std::string toJson(const nlohmann::json& value, int indent = 0);

// The --format of a listing (`node ls`, `service ls`, ...), by docker's rules: "" and "table"
// are the command's default table; "json" is one JSON object per line (docker ≥ 23);
// "table ..." is a table of the rest; anything else is a template printed once per row.
class ListingFormat {
 public:
  enum class Kind { Table, Json, Template };

  // defaultTable is the command's docker default, e.g. "table {{.ID}}\t{{.Hostname}}".
  static Result<ListingFormat> parse(std::string_view flag, std::string_view defaultTable);

  Kind kind() const { return kind_; }
  Result<std::string> render(const std::vector<nlohmann::json>& rows, const Headers& headers = {}) const;

 private:
  ListingFormat(Kind kind, Template row) : kind_(kind), row_(std::move(row)) {}
  Kind kind_;
  Template row_;
};

// The --format of an inspect, by docker's rules: "" is the objects as an indented JSON array,
// "json" the same array on one line, anything else a template printed once per object.
class InspectFormat {
 public:
  enum class Kind { Indented, Json, Template };

  static Result<InspectFormat> parse(std::string_view flag);

  Kind kind() const { return kind_; }
  Result<std::string> render(const std::vector<nlohmann::json>& objects) const;

 private:
  InspectFormat(Kind kind, std::optional<Template> tmpl) : kind_(kind), tmpl_(std::move(tmpl)) {}
  Kind kind_;
  std::optional<Template> tmpl_;  // Kind::Template only
};

}  // namespace shoal::cli
