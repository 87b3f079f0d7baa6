// --format: docker's Go-template subset (see format.h). Three stages, as in Go's text/template:
// a lexer turns the format into tokens, a parser builds a tree and rejects what Go rejects at
// parse time (unknown functions, undefined variables, unbalanced {{end}}), and an executor walks
// the tree over one JSON object.
#include "tools/shoal/format.h"

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>

namespace shoal::cli {

namespace {

using json = nlohmann::json;

// Nesting beyond this is refused rather than risking the stack on hostile input.
constexpr int kMaxDepth = 100;

// ---------------------------------------------------------------------------------------------
// Characters and UTF-8

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isAlnum(char c) { return isAlpha(c) || isDigit(c); }
bool isLower(char c) { return c >= 'a' && c <= 'z'; }
bool isUpper(char c) { return c >= 'A' && c <= 'Z'; }
char toUpper(char c) { return isLower(c) ? char(c - 'a' + 'A') : c; }
char toLower(char c) { return isUpper(c) ? char(c - 'A' + 'a') : c; }

void appendUtf8(std::string& out, std::uint32_t cp) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// The length of the valid UTF-8 sequence at s[i] and its code point, or 0 when invalid.
size_t decodeUtf8(std::string_view s, size_t i, std::uint32_t& cp) {
  auto lead = static_cast<unsigned char>(s[i]);
  size_t len = lead < 0x80 ? 1 : lead >= 0xF0 && lead < 0xF5 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC2 ? 2 : 0;
  if (len == 0 || i + len > s.size()) return 0;
  cp = len == 1 ? lead : len == 2 ? lead & 0x1F : len == 3 ? lead & 0x0F : lead & 0x07;
  for (size_t k = 1; k < len; ++k) {
    auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (c & 0x3F);
  }
  bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
  if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

// Width in runes, as tabwriter and printf count it.
size_t runeCount(std::string_view s) {
  return size_t(std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string lineColumn(std::string_view src, size_t pos) {
  pos = std::min(pos, src.size());
  size_t line = 1 + size_t(std::count(src.begin(), src.begin() + long(pos), '\n'));
  size_t lineStart = src.rfind('\n', pos == 0 ? 0 : pos - 1);
  size_t column = (lineStart == std::string_view::npos || pos == 0) ? pos + 1 : pos - lineStart;
  return std::to_string(line) + ":" + std::to_string(column);
}

Error templateError(std::string_view src, size_t pos, const std::string& message) {
  return Error{"template: " + lineColumn(src, pos) + ": " + message};
}

// ---------------------------------------------------------------------------------------------
// Printing values as Go prints them

std::string typeName(const json& v) {
  switch (v.type()) {
    case json::value_t::string: return "string";
    case json::value_t::boolean: return "bool";
    case json::value_t::number_integer: return "int";
    case json::value_t::number_unsigned: return "uint64";
    case json::value_t::number_float: return "float64";
    case json::value_t::array: return "[]interface {}";
    case json::value_t::object: return "map[string]interface {}";
    default: return "<nil>";
  }
}

// Go's %v of a float64 (strconv 'g', shortest): %e form when the exponent is < -4 or >= 6.
std::string goFloat(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto sci = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string s(buf, sci.ptr);
  int exponent = std::atoi(s.c_str() + s.find('e') + 1);
  if (exponent < -4 || exponent >= 6) return s;
  auto fixed = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed);
  return std::string(buf, fixed.ptr);
}

bool integral(double d) { return std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18; }

std::string numberString(const json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return std::to_string(v.get<std::int64_t>());
  if (v.is_number_unsigned()) return std::to_string(v.get<std::uint64_t>());
  double d = v.get<double>();
  return integral(d) ? std::to_string(static_cast<std::int64_t>(d)) : goFloat(d);
}

void appendGo(std::string& out, const json& v) {
  if (v.is_string()) {
    out += v.get_ref<const std::string&>();
  } else if (v.is_boolean()) {
    out += v.get<bool>() ? "true" : "false";
  } else if (v.is_number()) {
    out += numberString(v);
  } else if (v.is_array() || v.is_object()) {
    out += v.is_array() ? "[" : "map[";
    bool first = true;
    for (const auto& [key, element] : v.items()) {
      if (!first) out += ' ';
      first = false;
      if (v.is_object()) out += key + ":";
      appendGo(out, element);
    }
    out += "]";
  } else {
    out += "<nil>";
  }
}

std::string goString(const json& v) {
  std::string out;
  appendGo(out, v);
  return out;
}

// Go's truth for if, with, and, or, not.
bool truth(const json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0;
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();
  if (v.is_array() || v.is_object()) return !v.empty();
  return false;
}

// ---------------------------------------------------------------------------------------------
// Go's encoding/json

// Go's strconv for encoding/json: 'f' form, 'e' form (e-07 written e-7) outside [1e-6, 1e21).
std::string jsonFloat(double d) {
  if (!std::isfinite(d)) return "null";
  char buf[64];
  double a = std::fabs(d);
  bool exp = a != 0 && (a < 1e-6 || a >= 1e21);
  auto r = std::to_chars(buf, buf + sizeof buf, d, exp ? std::chars_format::scientific : std::chars_format::fixed);
  std::string s(buf, r.ptr);
  size_t n = s.size();
  if (exp && n >= 4 && s[n - 4] == 'e' && s[n - 3] == '-' && s[n - 2] == '0') s.erase(n - 2, 1);
  return s;
}

// Go's escape for one code point, or "" when it is written as it is.
std::string jsonEscape(std::uint32_t cp) {
  static const char* hex = "0123456789abcdef";
  switch (cp) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    case 0x2028: return "\\u2028";
    case 0x2029: return "\\u2029";
    default: return cp < 0x20 ? std::string("\\u00") + hex[cp >> 4] + hex[cp & 0xF] : "";
  }
}

void appendJsonString(std::string& out, std::string_view s) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    std::uint32_t cp = 0;
    size_t len = decodeUtf8(s, i, cp);
    if (len == 0) {
      out += "\\ufffd";  // invalid UTF-8, as Go writes it
      i += 1;
      continue;
    }
    std::string escaped = jsonEscape(cp);
    out += escaped.empty() ? s.substr(i, len) : std::string_view(escaped);
    i += len;
  }
  out += '"';
}

void appendJson(std::string& out, const json& v, int indent, int depth);

void appendJsonNewline(std::string& out, int indent, int depth) {
  if (indent <= 0) return;
  out += '\n';
  out.append(size_t(indent * depth), ' ');
}

void appendJsonContainer(std::string& out, const json& v, int indent, int depth) {
  bool object = v.is_object();
  out += object ? '{' : '[';
  bool first = true;
  for (const auto& [key, element] : v.items()) {
    if (!first) out += ',';
    first = false;
    appendJsonNewline(out, indent, depth + 1);
    if (object) {
      appendJsonString(out, key);
      out += indent > 0 ? ": " : ":";
    }
    appendJson(out, element, indent, depth + 1);
  }
  if (!v.empty()) appendJsonNewline(out, indent, depth);
  out += object ? '}' : ']';
}

void appendJson(std::string& out, const json& v, int indent, int depth) {
  if (v.is_string()) {
    appendJsonString(out, v.get_ref<const std::string&>());
  } else if (v.is_number_float()) {
    out += jsonFloat(v.get<double>());
  } else if (v.is_number() || v.is_boolean()) {
    out += goString(v);
  } else if (v.is_array() || v.is_object()) {
    appendJsonContainer(out, v, indent, depth);
  } else {
    out += "null";
  }
}

// ---------------------------------------------------------------------------------------------
// Go's strconv.Quote, for printf %q

std::string goQuote(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\a': out += "\\a"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\v': out += "\\v"; break;
      default:
        if (u < 0x20 || u == 0x7F) {
          out += "\\x";
          out += hex[u >> 4];
          out += hex[u & 0xF];
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}


// ---------------------------------------------------------------------------------------------
// Lexer: text and actions to tokens. Comments disappear here and {{- -}} trim the text beside them.

enum class Tok { Text, Open, Close, Dot, Field, Var, Ident, Literal, Nil, LParen, RParen, Pipe, Declare, Assign, Comma, Eof };

struct Token {
  Tok kind;
  std::string text;  // Text, Field (the name), Var ("$x"), Ident
  json value;        // Literal
  size_t pos = 0;
  bool adjacent = false;  // no space since the previous token: `.A.B`, `$x.A`, `(...).A`
};

std::string interpretEscapes(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && (text[i + 1] == 't' || text[i + 1] == 'n')) {
      out += text[++i] == 't' ? '\t' : '\n';
    } else {
      out += text[i];
    }
  }
  return out;
}

class Lexer {
 public:
  Lexer(std::string_view src, TextEscapes escapes) : src_(src), escapes_(escapes) {}

  Result<std::vector<Token>> run() {
    while (i_ < src_.size()) {
      lexText();
      if (i_ < src_.size()) {
        if (Status s = lexAction(); !s) return s.error();
      }
    }
    emit(Tok::Eof, src_.size());
    return std::move(out_);
  }

 private:
  bool at(std::string_view s) const { return src_.substr(i_).starts_with(s); }
  bool leftTrimAt(size_t j) const { return j + 3 < src_.size() && src_[j + 2] == '-' && isSpace(src_[j + 3]); }
  Error fail(size_t pos, const std::string& message) const { return templateError(src_, pos, message); }

  Token& emit(Tok kind, size_t pos, std::string text = {}) {
    out_.push_back(Token{kind, std::move(text), {}, pos, pos == lastEnd_});
    return out_.back();
  }

  void lexText() {
    size_t j = std::min(src_.find("{{", i_), src_.size());
    std::string text = escapes_ == TextEscapes::Interpret ? interpretEscapes(src_.substr(i_, j - i_))
                                                          : std::string(src_.substr(i_, j - i_));
    if (trimNext_) text.erase(0, std::min(text.size(), size_t(std::find_if_not(text.begin(), text.end(), isSpace) - text.begin())));
    if (j < src_.size() && leftTrimAt(j)) {
      while (!text.empty() && isSpace(text.back())) text.pop_back();
    }
    if (!text.empty()) emit(Tok::Text, i_, std::move(text));
    trimNext_ = false;
    i_ = j;
  }

  // Skips spaces; true when the action closes here (setting trimNext_ for `-}}`).
  bool closesHere(bool& closed) {
    size_t start = i_;
    while (i_ < src_.size() && isSpace(src_[i_])) ++i_;
    closePos_ = i_ > start && at("-}}") ? i_ + 1 : i_;
    if (i_ > start && at("-}}")) {
      i_ += 3;
      trimNext_ = closed = true;
    } else if (at("}}")) {
      i_ += 2;
      closed = true;
    }
    return closed;
  }

  Status lexAction() {
    size_t open = i_;
    i_ += leftTrimAt(i_) ? 3 : 2;
    while (i_ < src_.size() && isSpace(src_[i_])) ++i_;
    if (at("/*")) return lexComment(open);
    emit(Tok::Open, open);
    lastEnd_ = std::string_view::npos;
    for (bool closed = false; !closesHere(closed);) {
      if (i_ >= src_.size()) return fail(open, "unclosed action");
      if (Status s = lexToken(); !s) return s;
    }
    emit(Tok::Close, closePos_);
    return {};
  }

  Status lexComment(size_t open) {
    size_t end = src_.find("*/", i_ + 2);
    if (end == std::string_view::npos) return fail(open, "unclosed comment");
    i_ = end + 2;
    bool closed = false;
    if (!closesHere(closed)) return fail(open, "comment ends before closing delimiter");
    return {};
  }

  Status lexToken() {
    char c = src_[i_];
    char next = i_ + 1 < src_.size() ? src_[i_ + 1] : '\0';
    Status s;
    if (c == '.' && isDigit(next)) {
      s = lexNumber();
    } else if (c == '.') {
      lexField();
    } else if (c == '$') {
      lexVariable();
    } else if (c == '"' || c == '`') {
      s = lexString(c);
    } else if (c == '\'') {
      s = lexChar();
    } else if (isDigit(c) || ((c == '-' || c == '+') && (isDigit(next) || next == '.'))) {
      s = lexNumber();
    } else if (isAlpha(c)) {
      lexIdentifier();
    } else {
      s = lexPunctuation();
    }
    lastEnd_ = i_;
    return s;
  }

  std::string readName() {
    size_t start = i_;
    while (i_ < src_.size() && isAlnum(src_[i_])) ++i_;
    return std::string(src_.substr(start, i_ - start));
  }

  void lexField() {
    size_t start = i_++;
    if (i_ < src_.size() && isAlpha(src_[i_])) {
      std::string name = readName();
      emit(Tok::Field, start, std::move(name));
    } else {
      emit(Tok::Dot, start);
    }
  }

  void lexVariable() {
    size_t start = i_++;
    emit(Tok::Var, start, "$" + readName());
  }

  void lexIdentifier() {
    size_t start = i_;
    std::string name = readName();
    if (name == "true" || name == "false") {
      emit(Tok::Literal, start).value = name == "true";
    } else if (name == "nil") {
      emit(Tok::Nil, start);
    } else {
      emit(Tok::Ident, start, std::move(name));
    }
  }

  Status lexPunctuation() {
    size_t start = i_;
    char c = src_[i_++];
    switch (c) {
      case '(': emit(Tok::LParen, start); return {};
      case ')': emit(Tok::RParen, start); return {};
      case '|': emit(Tok::Pipe, start); return {};
      case ',': emit(Tok::Comma, start); return {};
      case '=': emit(Tok::Assign, start); return {};
      case ':':
        if (i_ < src_.size() && src_[i_] == '=') {
          ++i_;
          emit(Tok::Declare, start);
          return {};
        }
        return fail(start, "expected :=");
      default: {
        char buf[64];
        std::snprintf(buf, sizeof buf, "bad character U+%04X", static_cast<unsigned char>(c));
        return fail(start, buf);
      }
    }
  }

  Status lexNumber() {
    size_t start = i_;
    if (src_[i_] == '-' || src_[i_] == '+') ++i_;
    while (i_ < src_.size()) {
      char c = src_[i_];
      bool sign = (c == '-' || c == '+') && (toLower(src_[i_ - 1]) == 'e' || toLower(src_[i_ - 1]) == 'p');
      if (!isAlnum(c) && c != '.' && !sign) break;
      ++i_;
    }
    std::string text(src_.substr(start, i_ - start));
    auto value = parseNumber(text);
    if (!value) return fail(start, "bad number syntax: \"" + text + "\"");
    emit(Tok::Literal, start).value = std::move(*value);
    return {};
  }

  static std::optional<json> parseNumber(std::string text) {
    std::erase(text, '_');
    if (text.empty()) return std::nullopt;
    const char* begin = text.c_str();
    char* end = nullptr;
    bool isFloat = text.find_first_of(".eEpP") != std::string::npos && text.find("0x") == std::string::npos &&
                   text.find("0X") == std::string::npos;
    errno = 0;
    if (!isFloat) {
      long long v = std::strtoll(begin, &end, 0);
      if (errno == 0 && *end == '\0') return json(std::int64_t(v));
      errno = 0;
    }
    double d = std::strtod(begin, &end);
    if (*end != '\0' || text.find_first_of("xXiInN") != std::string::npos) return std::nullopt;
    return json(d);
  }

  // One character of a quoted literal at i_, with Go's escapes; false when malformed.
  bool readChar(char quote, std::string& out) {
    char c = src_[i_++];
    if (c != '\\') {
      out += c;
      return c != '\n';
    }
    if (i_ >= src_.size()) return false;
    char e = src_[i_++];
    static const std::string_view simple = "abfnrtv\\'\"";
    static const std::string_view meaning = "\a\b\f\n\r\t\v\\'\"";
    if (auto k = simple.find(e); k != std::string_view::npos) {
      if ((e == '\'' && quote != '\'') || (e == '"' && quote != '"')) return false;
      out += meaning[k];
      return true;
    }
    return readNumericEscape(e, out);
  }

  bool readNumericEscape(char e, std::string& out) {
    int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : (e >= '0' && e <= '7') ? 3 : 0;
    if (digits == 0) return false;
    if (digits == 3) --i_;
    if (i_ + size_t(digits) > src_.size()) return false;
    std::uint32_t v = 0;
    auto r = std::from_chars(src_.data() + i_, src_.data() + i_ + digits, v, digits == 3 ? 8 : 16);
    if (r.ec != std::errc() || r.ptr != src_.data() + i_ + digits) return false;
    i_ += size_t(digits);
    if (e == 'x' || digits == 3) {
      if (v > 255) return false;
      out += char(v);
    } else {
      appendUtf8(out, v);
    }
    return true;
  }

  Status lexString(char quote) {
    size_t start = i_++;
    std::string value;
    if (quote == '`') {
      size_t end = src_.find('`', i_);
      if (end == std::string_view::npos) return fail(start, "unterminated raw quoted string");
      value = src_.substr(i_, end - i_);
      i_ = end + 1;
    } else {
      while (i_ < src_.size() && src_[i_] != '"') {
        if (!readChar('"', value)) return fail(start, "unterminated quoted string");
      }
      if (i_ >= src_.size()) return fail(start, "unterminated quoted string");
      ++i_;
    }
    emit(Tok::Literal, start).value = std::move(value);
    return {};
  }

  Status lexChar() {
    size_t start = i_++;
    std::uint32_t cp = 0;
    if (i_ < src_.size() && src_[i_] == '\\') {
      std::string bytes;
      if (!readChar('\'', bytes)) return fail(start, "malformed character constant");
      cp = static_cast<unsigned char>(bytes[0]);
      if (bytes.size() > 1) decodeUtf8(bytes, 0, cp);
    } else {
      bool plain = i_ < src_.size() && src_[i_] != '\'' && src_[i_] != '\n';
      size_t len = plain ? decodeUtf8(src_, i_, cp) : 0;
      if (len == 0) return fail(start, "malformed character constant");
      i_ += len;
    }
    if (i_ >= src_.size() || src_[i_] != '\'') return fail(start, "unterminated character constant");
    ++i_;
    emit(Tok::Literal, start).value = std::int64_t(cp);
    return {};
  }

  std::string_view src_;
  TextEscapes escapes_;
  size_t i_ = 0;
  size_t lastEnd_ = std::string_view::npos;
  size_t closePos_ = 0;
  bool trimNext_ = false;
  std::vector<Token> out_;
};

// ---------------------------------------------------------------------------------------------
// The tree

struct Pipeline;

// One operand of a command: `.`, `.A.B`, `$x.A`, a function's name, a literal or `( ... )`.
struct Arg {
  enum class Kind { Dot, Field, Variable, Function, Literal, Nil, Sub } kind;
  size_t pos = 0;
  std::string name;                 // Variable ("$x") or Function
  std::vector<std::string> fields;  // chained after the term
  json literal;
  std::shared_ptr<const Pipeline> sub;
};

struct Command {
  std::vector<Arg> args;
  size_t pos = 0;
};

struct Pipeline {
  enum class Decl { None, Declare, Assign } decl = Decl::None;
  std::vector<std::string> vars;
  std::vector<Command> commands;
  size_t pos = 0;
};

struct Node {
  enum class Kind { Text, Action, If, With, Range, Break, Continue } kind;
  size_t pos = 0;
  std::string text;
  Pipeline pipe;
  std::vector<Node> body;
  std::vector<Node> elseBody;  // {{else if}} and {{else with}} are one nested node here
};

using NodeList = std::vector<Node>;

// ---------------------------------------------------------------------------------------------
// Functions: Go's builtins and docker's (templates.go), by name, with their argument counts.

using Function = std::function<Result<json>(const std::vector<json>&)>;

struct FunctionSpec {
  size_t minArgs;
  size_t maxArgs;  // SIZE_MAX: variadic
  Function call;
};

const std::map<std::string, FunctionSpec, std::less<>>& functions();

bool isFunction(std::string_view name) { return functions().count(name) > 0; }

bool isKeyword(std::string_view name) {
  static const std::vector<std::string_view> keywords = {"if", "else", "end", "range", "with", "break",
                                                         "continue", "define", "template", "block"};
  return std::find(keywords.begin(), keywords.end(), name) != keywords.end();
}

// ---------------------------------------------------------------------------------------------
// Parser: tokens to a tree, with Go's parse-time checks.

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, std::string_view src) : toks_(tokens), src_(src) {}

  Result<NodeList> run() {
    NodeList root;
    auto stop = parseList(root);
    if (!stop) return stop.error();
    if (stop->kind == Stop::End) return fail(stop->pos, "unexpected {{end}}");
    if (stop->kind == Stop::Else) return fail(stop->pos, "unexpected {{else}}");
    return root;
  }

 private:
  struct Stop {
    enum Kind { Eof, End, Else } kind;
    size_t pos;
  };

  const Token& peek(size_t ahead = 0) const { return toks_[std::min(i_ + ahead, toks_.size() - 1)]; }
  const Token& next() { return toks_[std::min(i_++, toks_.size() - 1)]; }
  bool peekIdent(std::string_view name) const { return peek().kind == Tok::Ident && peek().text == name; }
  Error fail(size_t pos, const std::string& message) const { return templateError(src_, pos, message); }
  bool declared(const std::string& name) const { return std::find(vars_.begin(), vars_.end(), name) != vars_.end(); }

  Status expectClose(std::string_view context) {
    if (peek().kind == Tok::Close) {
      next();
      return {};
    }
    return fail(peek().pos, "unexpected " + describe(peek()) + " in " + std::string(context));
  }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case Tok::Eof: return "EOF";
      case Tok::RParen: return "\")\"";
      case Tok::LParen: return "\"(\"";
      case Tok::Pipe: return "\"|\"";
      case Tok::Comma: return "\",\"";
      case Tok::Declare: return "\":=\"";
      case Tok::Assign: return "\"=\"";
      case Tok::Literal: return "<" + t.value.dump() + ">";
      case Tok::Field: return "<." + t.text + ">";
      default: return "<" + t.text + ">";
    }
  }

  Result<Stop> parseList(NodeList& out) {
    if (++depth_ > kMaxDepth) return fail(peek().pos, "template nested too deeply");
    for (;;) {
      const Token& t = next();
      if (t.kind == Tok::Eof) return Stop{Stop::Eof, t.pos};
      if (t.kind == Tok::Text) {
        out.push_back(Node{Node::Kind::Text, t.pos, t.text, {}, {}, {}});
        continue;
      }
      auto stop = parseAction(out, t.pos);
      if (!stop) return stop.error();
      if (*stop) {
        --depth_;
        return **stop;
      }
    }
  }

  // After {{: a control structure, {{end}}/{{else}} (returned to the enclosing list), or a pipeline.
  Result<std::optional<Stop>> parseAction(NodeList& out, size_t open) {
    const Token& t = peek();
    size_t pos = t.pos;
    if (t.kind == Tok::Ident && (t.text == "end" || t.text == "else")) {
      next();
      bool end = t.text == "end";
      if (end) {
        if (Status s = expectClose("end"); !s) return s.error();
      }
      return std::optional<Stop>(Stop{end ? Stop::End : Stop::Else, pos});
    }
    auto node = parseStatement(open);
    if (!node) return node.error();
    out.push_back(std::move(*node));
    return std::optional<Stop>();
  }

  Result<Node> parseStatement(size_t open) {
    const Token& t = peek();
    if (t.kind == Tok::Ident && (t.text == "if" || t.text == "with" || t.text == "range")) {
      Node::Kind kind = t.text == "if" ? Node::Kind::If : t.text == "with" ? Node::Kind::With : Node::Kind::Range;
      next();
      return parseControl(kind, t.pos);
    }
    if (t.kind == Tok::Ident && (t.text == "break" || t.text == "continue")) return parseLoopControl();
    if (t.kind == Tok::Ident && (t.text == "define" || t.text == "template" || t.text == "block")) {
      return fail(t.pos, "{{" + t.text + "}} is not supported by shoal's --format");
    }
    auto pipe = parsePipeline("command", false);
    if (!pipe) return pipe.error();
    return Node{Node::Kind::Action, open, {}, std::move(*pipe), {}, {}};
  }

  Result<Node> parseLoopControl() {
    const Token& t = next();
    if (rangeDepth_ == 0) return fail(t.pos, "{{" + t.text + "}} outside {{range}}");
    Node::Kind kind = t.text == "break" ? Node::Kind::Break : Node::Kind::Continue;
    if (Status s = expectClose(t.text); !s) return s.error();
    return Node{kind, t.pos, {}, {}, {}, {}};
  }

  static std::string keyword(Node::Kind kind) {
    return kind == Node::Kind::If ? "if" : kind == Node::Kind::With ? "with" : "range";
  }

  Result<Node> parseControl(Node::Kind kind, size_t pos) {
    size_t mark = vars_.size();
    auto pipe = parsePipeline(keyword(kind), false);
    if (!pipe) return pipe.error();
    Node node{kind, pos, {}, std::move(*pipe), {}, {}};
    rangeDepth_ += kind == Node::Kind::Range;
    auto stop = parseList(node.body);
    rangeDepth_ -= kind == Node::Kind::Range;
    if (!stop) return stop.error();
    if (stop->kind == Stop::Else) {
      auto elseStop = parseElse(node);
      if (!elseStop) return elseStop.error();
      stop = *elseStop;
    }
    vars_.resize(mark);
    if (stop->kind != Stop::End) return fail(pos, "unexpected EOF: {{" + keyword(kind) + "}} has no {{end}}");
    return node;
  }

  // After {{else: `if`/`with` chains a nested control that takes the {{end}} for both.
  Result<Stop> parseElse(Node& node) {
    std::string chained = node.kind == Node::Kind::Range ? "" : keyword(node.kind);
    if (!chained.empty() && peekIdent(chained)) {
      size_t pos = next().pos;
      auto inner = parseControl(node.kind, pos);
      if (!inner) return inner.error();
      node.elseBody.push_back(std::move(*inner));
      return Stop{Stop::End, pos};
    }
    if (Status s = expectClose("else"); !s) return s.error();
    auto stop = parseList(node.elseBody);
    if (stop && stop->kind == Stop::Else) return fail(stop->pos, "expected end; found {{else}}");
    return stop;
  }

  // `$x :=`, `$x =`, or in a range `$k, $v :=`.
  Status parseDeclaration(Pipeline& pipe, std::string_view context) {
    bool two = context == "range" && peek(1).kind == Tok::Comma && peek(2).kind == Tok::Var &&
               (peek(3).kind == Tok::Declare || peek(3).kind == Tok::Assign);
    bool one = peek(1).kind == Tok::Declare || peek(1).kind == Tok::Assign;
    if (peek().kind != Tok::Var || (!one && !two)) return {};
    pipe.vars.push_back(next().text);
    if (two) {
      next();
      pipe.vars.push_back(next().text);
    }
    pipe.decl = next().kind == Tok::Declare ? Pipeline::Decl::Declare : Pipeline::Decl::Assign;
    for (const auto& name : pipe.vars) {
      if (pipe.decl == Pipeline::Decl::Assign && !declared(name)) return fail(pipe.pos, "undefined variable \"" + name + "\"");
    }
    if (pipe.decl == Pipeline::Decl::Declare) vars_.insert(vars_.end(), pipe.vars.begin(), pipe.vars.end());
    return {};
  }

  Result<Pipeline> parsePipeline(std::string_view context, bool inParens) {
    Pipeline pipe;
    pipe.pos = peek().pos;
    if (Status s = parseDeclaration(pipe, context); !s) return s.error();
    for (;;) {
      auto command = parseCommand();
      if (!command) return command.error();
      bool empty = command->args.empty();
      if (!empty) pipe.commands.push_back(std::move(*command));
      const Token& t = next();
      if (t.kind == Tok::Pipe && !empty) continue;
      if (t.kind == Tok::Pipe) return fail(t.pos, "missing command before \"|\"");
      if (t.kind == (inParens ? Tok::RParen : Tok::Close)) break;
      if (inParens && t.kind == Tok::Close) return fail(t.pos, "unclosed left paren");
      return fail(t.pos, "unexpected " + describe(t) + " in " + std::string(context));
    }
    if (pipe.commands.empty()) return fail(pipe.pos, "missing value for " + std::string(context));
    return pipe;
  }

  Result<Command> parseCommand() {
    Command command;
    command.pos = peek().pos;
    for (;;) {
      Tok k = peek().kind;
      if (k == Tok::Pipe || k == Tok::Close || k == Tok::RParen || k == Tok::Eof) return command;
      auto arg = parseOperand();
      if (!arg) return arg.error();
      command.args.push_back(std::move(*arg));
    }
  }

  Result<Arg> parseOperand() {
    auto arg = parseTerm();
    if (!arg) return arg;
    while (peek().kind == Tok::Field && peek().adjacent) {
      if (arg->kind == Arg::Kind::Function || arg->kind == Arg::Kind::Literal || arg->kind == Arg::Kind::Nil) {
        return fail(peek().pos, "unexpected . after term");
      }
      if (arg->kind == Arg::Kind::Dot) arg->kind = Arg::Kind::Field;
      arg->fields.push_back(next().text);
    }
    return arg;
  }

  Result<Arg> parseTerm() {
    const Token& t = next();
    Arg arg{Arg::Kind::Literal, t.pos, {}, {}, {}, {}};
    switch (t.kind) {
      case Tok::Dot: arg.kind = Arg::Kind::Dot; return arg;
      case Tok::Field: arg.kind = Arg::Kind::Field; arg.fields.push_back(t.text); return arg;
      case Tok::Literal: arg.literal = t.value; return arg;
      case Tok::Nil: arg.kind = Arg::Kind::Nil; return arg;
      case Tok::Var: return variableTerm(t);
      case Tok::Ident: return functionTerm(t);
      case Tok::LParen: return parenTerm(t);
      default: return fail(t.pos, "unexpected " + describe(t) + " in operand");
    }
  }

  Result<Arg> variableTerm(const Token& t) {
    if (!declared(t.text)) return fail(t.pos, "undefined variable \"" + t.text + "\"");
    return Arg{Arg::Kind::Variable, t.pos, t.text, {}, {}, {}};
  }

  Result<Arg> functionTerm(const Token& t) {
    if (isKeyword(t.text)) return fail(t.pos, "unexpected <" + t.text + "> in command");
    if (!isFunction(t.text)) return fail(t.pos, "function \"" + t.text + "\" not defined");
    return Arg{Arg::Kind::Function, t.pos, t.text, {}, {}, {}};
  }

  Result<Arg> parenTerm(const Token& t) {
    if (++depth_ > kMaxDepth) return fail(t.pos, "template nested too deeply");
    auto pipe = parsePipeline("parenthesized pipeline", true);
    --depth_;
    if (!pipe) return pipe.error();
    return Arg{Arg::Kind::Sub, t.pos, {}, {}, {}, std::make_shared<const Pipeline>(std::move(*pipe))};
  }

  const std::vector<Token>& toks_;
  std::string_view src_;
  size_t i_ = 0;
  int depth_ = 0;
  int rangeDepth_ = 0;
  std::vector<std::string> vars_{"$"};
};

// ---------------------------------------------------------------------------------------------
// Executor: the tree over one object (or, for a header row, over column titles).

enum class Flow { Normal, Break, Continue };

// Docker's HeaderFunctions: these print their first argument's header unchanged.
bool passesHeaderThrough(std::string_view name) {
  static const std::vector<std::string_view> names = {"json", "split", "join", "title", "lower", "upper", "truncate"};
  return std::find(names.begin(), names.end(), name) != names.end();
}

class Executor {
 public:
  Executor(std::string_view src, const Headers* headers) : src_(src), headers_(headers) {}

  Status run(const NodeList& root, const json& dot) {
    vars_.assign(1, {"$", dot});
    auto flow = walkList(root, dot);
    if (!flow) return flow.error();
    return {};
  }

  std::string out;

 private:
  Error fail(size_t pos, const std::string& message) const { return templateError(src_, pos, message); }

  std::string header(const std::vector<std::string>& fields) const {
    std::string path;
    for (const auto& f : fields) path += (path.empty() ? "" : ".") + f;
    auto it = headers_->find(path);
    return it != headers_->end() ? it->second : defaultHeader(path);
  }

  Result<Flow> walkList(const NodeList& list, const json& dot) {
    for (const Node& node : list) {
      auto flow = walkNode(node, dot);
      if (!flow || *flow != Flow::Normal) return flow;
    }
    return Flow::Normal;
  }

  Result<Flow> walkNode(const Node& node, const json& dot) {
    switch (node.kind) {
      case Node::Kind::Text: out += node.text; return Flow::Normal;
      case Node::Kind::Action: return walkAction(node, dot);
      case Node::Kind::If:
      case Node::Kind::With: return scoped([&] { return walkBranch(node, dot); });
      case Node::Kind::Range: return scoped([&] { return headers_ ? walkAction(node, dot) : walkRange(node, dot); });
      case Node::Kind::Break: return Flow::Break;
      case Node::Kind::Continue: return Flow::Continue;
    }
    return Flow::Normal;
  }

  // Variables declared inside a control structure end at its {{end}}.
  template <class F>
  Result<Flow> scoped(F f) {
    size_t mark = vars_.size();
    auto flow = f();
    vars_.resize(mark);
    return flow;
  }

  Result<Flow> walkAction(const Node& node, const json& dot) {
    auto value = evalPipeline(node.pipe, dot);
    if (!value) return value.error();
    if (node.pipe.decl == Pipeline::Decl::None || node.kind == Node::Kind::Range) {
      out += value->is_null() ? "<no value>" : goString(*value);
    }
    return Flow::Normal;
  }

  Result<Flow> walkBranch(const Node& node, const json& dot) {
    auto value = evalPipeline(node.pipe, dot);
    if (!value) return value.error();
    if (truth(*value)) return walkList(node.body, node.kind == Node::Kind::With ? *value : dot);
    return walkList(node.elseBody, dot);
  }

  Result<Flow> walkRange(const Node& node, const json& dot) {
    auto value = evalCommands(node.pipe, dot);
    if (!value) return value.error();
    if (!value->is_null() && !value->is_array() && !value->is_object()) {
      return fail(node.pos, "range can't iterate over " + goString(*value));
    }
    if (!value || value->empty()) return walkList(node.elseBody, dot);
    if (node.pipe.decl == Pipeline::Decl::Declare) {
      for (const auto& name : node.pipe.vars) vars_.emplace_back(name, json());
    }
    size_t index = 0;
    for (const auto& [key, element] : value->items()) {
      setRangeVars(node.pipe.vars, value->is_object() ? json(key) : json(index++), element);
      auto flow = walkList(node.body, element);
      if (!flow) return flow;
      if (*flow == Flow::Break) break;
    }
    return Flow::Normal;
  }

  // One variable takes the element; two take the index or key and the element.
  void setRangeVars(const std::vector<std::string>& names, json key, const json& element) {
    if (names.size() == 2) variable(names[0]) = std::move(key);
    if (!names.empty()) variable(names.back()) = element;
  }

  Result<json> evalPipeline(const Pipeline& pipe, const json& dot) {
    auto value = evalCommands(pipe, dot);
    if (!value) return value;
    for (const auto& name : pipe.vars) {
      if (pipe.decl == Pipeline::Decl::Declare) {
        vars_.emplace_back(name, *value);
      } else {
        variable(name) = *value;
      }
    }
    return value;
  }

  json& variable(const std::string& name) {
    auto it = std::find_if(vars_.rbegin(), vars_.rend(), [&](const auto& v) { return v.first == name; });
    return it != vars_.rend() ? it->second : vars_.front().second;  // the parser saw every name declared
  }

  Result<json> evalCommands(const Pipeline& pipe, const json& dot) {
    if (++depth_ > kMaxDepth) return fail(pipe.pos, "template nested too deeply");
    json value;
    for (size_t i = 0; i < pipe.commands.size(); ++i) {
      auto result = evalCommand(pipe.commands[i], dot, i > 0 ? &value : nullptr);
      if (!result) return result;
      value = std::move(*result);
    }
    --depth_;
    return value;
  }

  Result<json> evalCommand(const Command& command, const json& dot, const json* piped) {
    const Arg& first = command.args.front();
    if (first.kind != Arg::Kind::Function) {
      if (command.args.size() > 1 || piped) return fail(first.pos, "can't give argument to non-function " + describe(first));
      if (first.kind == Arg::Kind::Nil) return fail(first.pos, "nil is not a command");
      return evalArg(first, dot);
    }
    if (first.name == "and" || first.name == "or") return evalLogic(command, dot, piped);
    std::vector<json> args;
    for (size_t i = 1; i < command.args.size(); ++i) {
      auto value = evalArg(command.args[i], dot);
      if (!value) return value;
      args.push_back(std::move(*value));
    }
    if (piped) args.push_back(*piped);
    return call(first, args);
  }

  // Go's and/or stop at the first argument that decides, so `and .A (index .A "k")` is safe.
  Result<json> evalLogic(const Command& command, const json& dot, const json* piped) {
    bool isAnd = command.args.front().name == "and";
    if (command.args.size() == 1 && !piped) return call(command.args.front(), {});  // the arity error
    json value;
    for (size_t i = 1; i < command.args.size(); ++i) {
      auto next = evalArg(command.args[i], dot);
      if (!next) return next;
      value = std::move(*next);
      if (truth(value) != isAnd) return value;
    }
    return piped ? *piped : value;
  }

  static std::string describe(const Arg& arg) {
    std::string text = arg.kind == Arg::Kind::Dot ? "." : arg.kind == Arg::Kind::Literal ? arg.literal.dump() : arg.name;
    for (const auto& f : arg.fields) text += "." + f;
    return text;
  }

  Result<json> evalArg(const Arg& arg, const json& dot) {
    switch (arg.kind) {
      case Arg::Kind::Dot: return dot;
      case Arg::Kind::Literal: return arg.literal;
      case Arg::Kind::Nil: return json();
      case Arg::Kind::Function: return call(arg, {});
      case Arg::Kind::Field: return evalFields(dot, arg);
      case Arg::Kind::Variable: return evalFields(variable(arg.name), arg);
      case Arg::Kind::Sub: {
        auto value = evalCommands(*arg.sub, dot);
        if (!value) return value;
        return evalFields(*value, arg);
      }
    }
    return json();
  }

  Result<json> evalFields(const json& start, const Arg& arg) {
    if (headers_ && !arg.fields.empty()) return json(header(arg.fields));
    const json* value = &start;
    for (const auto& field : arg.fields) {
      if (value->is_null()) return json();
      if (!value->is_object()) return fail(arg.pos, "can't evaluate field " + field + " in type " + typeName(*value));
      auto it = value->find(field);
      if (it == value->end()) return json();
      value = &*it;
    }
    return *value;
  }

  Result<json> call(const Arg& fn, const std::vector<json>& args) {
    const FunctionSpec& spec = functions().at(fn.name);
    if (args.size() < spec.minArgs || args.size() > spec.maxArgs) {
      std::string want = spec.maxArgs == SIZE_MAX ? "at least " + std::to_string(spec.minArgs) : std::to_string(spec.minArgs);
      return fail(fn.pos, "wrong number of args for " + fn.name + ": want " + want + " got " + std::to_string(args.size()));
    }
    if (headers_ && passesHeaderThrough(fn.name)) return args.front();
    if (headers_ && fn.name == "index" && args.size() > 1 && args.back().is_string()) {
      return json(header({args.back().get<std::string>()}));
    }
    auto result = spec.call(args);
    if (!result) return fail(fn.pos, "error calling " + fn.name + ": " + result.error().message);
    return result;
  }

  std::string_view src_;
  const Headers* headers_;
  std::vector<std::pair<std::string, json>> vars_;
  int depth_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Arguments of functions. Missing and null read as the zero value (format.h).

Error argError(const std::string& want, const json& got) {
  return Error{"wrong type for value; expected " + want + "; got " + typeName(got)};
}

Result<std::string> stringArg(const json& v) {
  if (v.is_null()) return std::string();
  if (!v.is_string()) return argError("string", v);
  return v.get<std::string>();
}

Result<std::int64_t> intArg(const json& v) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > std::uint64_t(INT64_MAX)) return argError("int", v);
    return v.get<std::int64_t>();
  }
  if (v.is_number_float() && integral(v.get<double>())) return static_cast<std::int64_t>(v.get<double>());
  return argError("int", v);
}

// -1, 0, 1 for two numbers, exact for integers of either sign.
int compareNumbers(const json& a, const json& b) {
  auto sign = [](auto x, auto y) { return x < y ? -1 : x > y ? 1 : 0; };
  if (a.is_number_float() || b.is_number_float()) return sign(a.get<double>(), b.get<double>());
  bool aNeg = !a.is_number_unsigned() && a.get<std::int64_t>() < 0;
  bool bNeg = !b.is_number_unsigned() && b.get<std::int64_t>() < 0;
  if (aNeg || bNeg) return aNeg && bNeg ? sign(a.get<std::int64_t>(), b.get<std::int64_t>()) : aNeg ? -1 : 1;
  return sign(a.get<std::uint64_t>(), b.get<std::uint64_t>());
}

Result<bool> equal(const json& a, const json& b) {
  if (a.is_array() || a.is_object() || b.is_array() || b.is_object()) return Error{"non-comparable type"};
  if (a.is_null() || b.is_null()) return a.is_null() && b.is_null();
  if (a.is_number() && b.is_number()) return compareNumbers(a, b) == 0;
  if (a.type() != b.type()) return Error{"incompatible types for comparison"};
  return a == b;
}

Result<int> order(const json& a, const json& b) {
  if (a.is_number() && b.is_number()) return compareNumbers(a, b);
  if (a.is_string() && b.is_string()) return a.get_ref<const std::string&>().compare(b.get_ref<const std::string&>());
  if (a.type() != b.type()) return Error{"incompatible types for comparison"};
  return Error{"invalid type for comparison"};
}

Function ordered(bool (*accept)(int)) {
  return [accept](const std::vector<json>& a) -> Result<json> {
    auto c = order(a[0], a[1]);
    if (!c) return c.error();
    return json(accept(*c));
  };
}

// ---------------------------------------------------------------------------------------------
// Go's builtins

Result<json> fnEq(const std::vector<json>& a) {
  for (size_t i = 1; i < a.size(); ++i) {
    auto same = equal(a[0], a[i]);
    if (!same || *same) return same ? Result<json>(json(true)) : Result<json>(same.error());
  }
  if (a.size() < 2) return Error{"missing argument for comparison"};
  return json(false);
}

Result<json> fnNe(const std::vector<json>& a) {
  auto same = equal(a[0], a[1]);
  if (!same) return same.error();
  return json(!*same);
}

Result<json> fnAnd(const std::vector<json>& a) {
  for (const auto& v : a) {
    if (!truth(v)) return v;
  }
  return a.back();
}

Result<json> fnOr(const std::vector<json>& a) {
  for (const auto& v : a) {
    if (truth(v)) return v;
  }
  return a.back();
}

Result<json> fnLen(const std::vector<json>& a) {
  const json& v = a[0];
  if (v.is_null()) return json(0);
  if (v.is_string()) return json(v.get_ref<const std::string&>().size());
  if (v.is_array() || v.is_object()) return json(v.size());
  return Error{"len of type " + typeName(v)};
}

Result<json> indexOnce(const json& item, const json& key) {
  if (item.is_null()) return json("");
  if (item.is_object()) {
    if (!key.is_string()) return Error{"cannot index map with " + typeName(key)};
    auto it = item.find(key.get<std::string>());
    return it == item.end() ? json("") : *it;
  }
  if (!item.is_array()) return Error{"can't index item of type " + typeName(item)};
  auto i = intArg(key);
  if (!i) return Error{"cannot index slice/array with type " + typeName(key)};
  if (*i < 0 || std::uint64_t(*i) >= item.size()) return Error{"index out of range: " + std::to_string(*i)};
  return item[size_t(*i)];
}

Result<json> fnIndex(const std::vector<json>& a) {
  json item = a[0];
  for (size_t i = 1; i < a.size(); ++i) {
    auto next = indexOnce(item, a[i]);
    if (!next) return next;
    item = std::move(*next);
  }
  return item;
}

// fmt.Sprint: a space between operands when neither is a string.
Result<json> fnPrint(const std::vector<json>& a) {
  std::string out;
  for (size_t i = 0; i < a.size(); ++i) {
    if (i > 0 && !a[i].is_string() && !a[i - 1].is_string()) out += ' ';
    out += goString(a[i]);
  }
  return json(out);
}

Result<json> fnPrintln(const std::vector<json>& a) {
  std::string out;
  for (size_t i = 0; i < a.size(); ++i) out += (i > 0 ? " " : "") + goString(a[i]);
  return json(out + "\n");
}

// ---------------------------------------------------------------------------------------------
// docker's functions (cli/templates/templates.go)

Result<json> fnJson(const std::vector<json>& a) { return json(toJson(a[0])); }

Result<json> fnSplit(const std::vector<json>& a) {
  auto s = stringArg(a[0]);
  auto sep = stringArg(a[1]);
  if (!s || !sep) return !s ? s.error() : sep.error();
  json parts = json::array();
  if (sep->empty()) {
    for (size_t i = 0; i < s->size();) {
      std::uint32_t cp = 0;
      size_t len = std::max<size_t>(1, decodeUtf8(*s, i, cp));
      parts.push_back(s->substr(i, len));
      i += len;
    }
    return parts;
  }
  size_t start = 0;
  for (size_t at; (at = s->find(*sep, start)) != std::string::npos; start = at + sep->size()) parts.push_back(s->substr(start, at - start));
  parts.push_back(s->substr(start));
  return parts;
}

Result<json> fnJoin(const std::vector<json>& a) {
  auto sep = stringArg(a[1]);
  if (!sep) return sep.error();
  if (!a[0].is_null() && !a[0].is_array()) return argError("[]string", a[0]);
  std::string out;
  for (size_t i = 0; i < a[0].size(); ++i) out += (i > 0 ? *sep : "") + goString(a[0][i]);
  return json(out);
}

Function mapString(char (*change)(char, char)) {
  return [change](const std::vector<json>& a) -> Result<json> {
    auto s = stringArg(a[0]);
    if (!s) return s.error();
    char previous = ' ';
    for (char& c : *s) {
      char original = c;
      c = change(c, previous);
      previous = original;
    }
    return json(*s);
  };
}

// strings.Title: a letter after a separator (anything but a letter, digit, '_' or non-ASCII).
char titleChar(char c, char previous) {
  bool separator = static_cast<unsigned char>(previous) < 0x80 && !isAlnum(previous);
  return separator ? toUpper(c) : c;
}

Result<json> fnPad(const std::vector<json>& a) {
  auto s = stringArg(a[0]);
  auto left = intArg(a[1]);
  auto right = intArg(a[2]);
  if (!s) return s.error();
  if (!left || !right) return !left ? left.error() : right.error();
  if (s->empty()) return json("");
  auto spaces = [](std::int64_t n) { return std::string(size_t(std::clamp<std::int64_t>(n, 0, 1 << 16)), ' '); };
  return json(spaces(*left) + *s + spaces(*right));
}

Result<json> fnTruncate(const std::vector<json>& a) {
  auto s = stringArg(a[0]);
  auto n = intArg(a[1]);
  if (!s) return s.error();
  if (!n) return n.error();
  if (*n < 0 || std::uint64_t(*n) >= s->size()) return json(*s);
  return json(s->substr(0, size_t(*n)));
}

// ---------------------------------------------------------------------------------------------
// printf: Go's fmt verbs %v %s %d %q %x %X %f %e %t %c %%, flags - + 0 and space, width, precision.

struct Spec {
  bool minus = false, plus = false, zero = false, space = false;
  int width = -1, precision = -1;
  char verb = 'v';
};

std::string badVerb(char verb, const json& v) { return std::string("%!") + verb + "(" + typeName(v) + "=" + goString(v) + ")"; }

std::string formatInteger(const Spec& spec, const json& v, int base, bool upper) {
  bool negative = v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() < 0;
  std::uint64_t magnitude = v.is_number_unsigned() ? v.get<std::uint64_t>()
                                                   : negative ? 0 - std::uint64_t(v.get<std::int64_t>()) : std::uint64_t(v.get<std::int64_t>());
  char buf[72];
  auto r = std::to_chars(buf, buf + sizeof buf, magnitude, base);
  std::string digits(buf, r.ptr);
  if (upper) std::transform(digits.begin(), digits.end(), digits.begin(), toUpper);
  if (spec.precision >= 0 && digits.size() < size_t(spec.precision)) digits.insert(0, size_t(spec.precision) - digits.size(), '0');
  return (negative ? "-" : spec.plus ? "+" : spec.space ? " " : "") + digits;
}

std::string formatFloat(const Spec& spec, double d) {
  char format[16];
  std::snprintf(format, sizeof format, "%%%s%s.%d%c", spec.plus ? "+" : "", spec.space ? " " : "",
                spec.precision < 0 ? 6 : std::min(spec.precision, 100), spec.verb);
  char buf[512];
  std::snprintf(buf, sizeof buf, format, d);
  return buf;
}

std::string hexBytes(std::string_view s, bool upper) {
  static const char* lower = "0123456789abcdef";
  static const char* upperDigits = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    out += (upper ? upperDigits : lower)[u >> 4];
    out += (upper ? upperDigits : lower)[u & 0xF];
  }
  return out;
}

// A value's integer form for %d %x %c: JSON's integral floats count as integers (format.h).
std::optional<json> asInteger(const json& v) {
  if (v.is_number_integer()) return v;
  if (v.is_number_float() && integral(v.get<double>())) return json(static_cast<std::int64_t>(v.get<double>()));
  return std::nullopt;
}

std::string formatString(const Spec& spec, const json& v) {
  if (!v.is_string() && (v.is_number() || v.is_boolean())) return badVerb(spec.verb, v);
  std::string s = goString(v);
  if (spec.precision >= 0 && runeCount(s) > size_t(spec.precision)) {
    size_t runes = 0, i = 0;
    for (; i < s.size(); ++i) {
      if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && runes++ == size_t(spec.precision)) break;
    }
    s.resize(i);
  }
  return s;
}

std::string formatVerb(const Spec& spec, const json& v) {
  auto integer = asInteger(v);
  switch (spec.verb) {
    case 'v': return v.is_number() && integer ? formatInteger(spec, *integer, 10, false) : goString(v);
    case 's': return formatString(spec, v);
    case 'd': return integer ? formatInteger(spec, *integer, 10, false) : badVerb('d', v);
    case 'q': return v.is_string() ? goQuote(v.get<std::string>()) : badVerb('q', v);
    case 't': return v.is_boolean() ? goString(v) : badVerb('t', v);
    case 'f': case 'F': case 'e': case 'E':
      return v.is_number() ? formatFloat(spec, v.get<double>()) : badVerb(spec.verb, v);
    case 'x': case 'X':
      if (integer) return formatInteger(spec, *integer, 16, spec.verb == 'X');
      return v.is_string() ? hexBytes(v.get<std::string>(), spec.verb == 'X') : badVerb(spec.verb, v);
    case 'c': {
      if (!integer) return badVerb('c', v);
      std::string out;
      appendUtf8(out, std::uint32_t(std::clamp<std::int64_t>(integer->get<std::int64_t>(), 0, 0x10FFFF)));
      return out;
    }
    default: return badVerb(spec.verb, v);
  }
}

std::string pad(const Spec& spec, std::string s, bool numeric) {
  size_t width = size_t(std::clamp(spec.width, 0, 1 << 16));
  size_t runes = runeCount(s);
  if (runes >= width) return s;
  if (spec.minus) return s + std::string(width - runes, ' ');
  if (spec.zero && numeric) {
    size_t signs = !s.empty() && (s[0] == '-' || s[0] == '+' || s[0] == ' ') ? 1 : 0;
    return s.insert(signs, width - runes, '0');
  }
  return std::string(width - runes, ' ') + s;
}

// Reads flags, width, precision and verb after a '%'; i ends after the verb.
Spec readSpec(std::string_view format, size_t& i) {
  Spec spec;
  for (; i < format.size() && std::string_view("-+0 #").find(format[i]) != std::string_view::npos; ++i) {
    spec.minus |= format[i] == '-';
    spec.plus |= format[i] == '+';
    spec.zero |= format[i] == '0';
    spec.space |= format[i] == ' ';
  }
  auto number = [&](int& into) {
    into = 0;
    for (; i < format.size() && isDigit(format[i]); ++i) into = std::min(into * 10 + (format[i] - '0'), 1 << 20);
  };
  if (i < format.size() && isDigit(format[i])) number(spec.width);
  if (i < format.size() && format[i] == '.') {
    ++i;
    number(spec.precision);
  }
  spec.verb = i < format.size() ? format[i++] : '\0';
  return spec;
}

std::string goSprintf(std::string_view format, const std::vector<json>& args) {
  std::string out;
  size_t used = 0;
  for (size_t i = 0; i < format.size();) {
    if (format[i] != '%') {
      out += format[i++];
      continue;
    }
    ++i;
    Spec spec = readSpec(format, i);
    if (spec.verb == '%') {
      out += '%';
    } else if (spec.verb == '\0') {
      out += "%!(NOVERB)";
    } else if (used >= args.size()) {
      out += std::string("%!") + spec.verb + "(MISSING)";
    } else {
      const json& v = args[used++];
      out += pad(spec, formatVerb(spec, v), v.is_number());
    }
  }
  if (used < args.size()) {
    out += "%!(EXTRA ";
    for (size_t k = used; k < args.size(); ++k) out += (k > used ? ", " : "") + typeName(args[k]) + "=" + goString(args[k]);
    out += ")";
  }
  return out;
}

Result<json> fnPrintf(const std::vector<json>& a) {
  auto format = stringArg(a[0]);
  if (!format) return format.error();
  return json(goSprintf(*format, std::vector<json>(a.begin() + 1, a.end())));
}

const std::map<std::string, FunctionSpec, std::less<>>& functions() {
  static const std::map<std::string, FunctionSpec, std::less<>> table = {
      {"and", {1, SIZE_MAX, fnAnd}},
      {"or", {1, SIZE_MAX, fnOr}},
      {"not", {1, 1, [](const std::vector<json>& a) -> Result<json> { return json(!truth(a[0])); }}},
      {"len", {1, 1, fnLen}},
      {"index", {1, SIZE_MAX, fnIndex}},
      {"print", {0, SIZE_MAX, fnPrint}},
      {"printf", {1, SIZE_MAX, fnPrintf}},
      {"println", {0, SIZE_MAX, fnPrintln}},
      {"eq", {1, SIZE_MAX, fnEq}},
      {"ne", {2, 2, fnNe}},
      {"lt", {2, 2, ordered([](int c) { return c < 0; })}},
      {"le", {2, 2, ordered([](int c) { return c <= 0; })}},
      {"gt", {2, 2, ordered([](int c) { return c > 0; })}},
      {"ge", {2, 2, ordered([](int c) { return c >= 0; })}},
      {"json", {1, 1, fnJson}},
      {"split", {2, 2, fnSplit}},
      {"join", {2, 2, fnJoin}},
      {"title", {1, 1, mapString(titleChar)}},
      {"lower", {1, 1, mapString([](char c, char) { return toLower(c); })}},
      {"upper", {1, 1, mapString([](char c, char) { return toUpper(c); })}},
      {"pad", {3, 3, fnPad}},
      {"truncate", {2, 2, fnTruncate}},
  };
  return table;
}

// ---------------------------------------------------------------------------------------------
// tabwriter (Go's text/tabwriter with minwidth 10, tabwidth 1, padding 3, padchar ' ', flags 0)

using Cells = std::vector<std::string_view>;
constexpr size_t kMinWidth = 10;
constexpr size_t kPadding = 3;
// formatColumns recurses once per column; cells past this many stay in the line's last cell.
constexpr size_t kMaxColumns = 256;

void writeLines(const std::vector<Cells>& lines, size_t line0, size_t line1, const std::vector<size_t>& widths,
                std::string& out) {
  for (size_t row = line0; row < line1; ++row) {
    const Cells& cells = lines[row];
    for (size_t j = 0; j < cells.size(); ++j) {
      out += cells[j];
      if (j < widths.size()) out.append(widths[j] - std::min(widths[j], runeCount(cells[j])), ' ');
    }
    if (row + 1 < lines.size()) out += '\n';
  }
}

// Go's Writer.format: a column block is a run of lines with a cell in this column; its width is
// its widest cell plus padding; the columns to its right are formatted within the block.
void formatColumns(const std::vector<Cells>& lines, size_t line0, size_t line1, std::vector<size_t>& widths,
                   std::string& out) {
  size_t column = widths.size();
  for (size_t row = line0; row < line1; ++row) {
    if (column + 1 >= lines[row].size()) continue;
    writeLines(lines, line0, row, widths, out);
    line0 = row;
    size_t width = kMinWidth;
    for (; row < line1 && column + 1 < lines[row].size(); ++row) width = std::max(width, runeCount(lines[row][column]) + kPadding);
    widths.push_back(width);
    formatColumns(lines, line0, row, widths, out);
    widths.pop_back();
    line0 = row;
  }
  writeLines(lines, line0, line1, widths, out);
}

std::vector<std::string_view> splitView(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (size_t at; (at = text.find(sep, start)) != std::string_view::npos; start = at + 1) parts.push_back(text.substr(start, at - start));
  parts.push_back(text.substr(start));
  return parts;
}

std::string_view trimSpaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

}  // namespace

struct Template::Tree {
  std::string source;
  NodeList root;
};

Result<Template> Template::parse(std::string_view text, TextEscapes escapes) {
  auto tree = std::make_shared<Tree>();
  tree->source = text;
  auto tokens = Lexer(tree->source, escapes).run();
  if (!tokens) return tokens.error();
  auto root = Parser(*tokens, tree->source).run();
  if (!root) return root.error();
  tree->root = std::move(*root);
  return Template(std::move(tree));
}

Result<std::string> Template::render(const nlohmann::json& dot) const {
  Executor executor(tree_->source, nullptr);
  if (Status s = executor.run(tree_->root, dot); !s) return s.error();
  return std::move(executor.out);
}

std::string Template::renderHeader(const Headers& headers) const {
  Executor executor(tree_->source, &headers);
  (void)executor.run(tree_->root, json(""));
  return std::move(executor.out);
}

Result<std::string> renderTable(const Template& row, const std::vector<nlohmann::json>& rows, const Headers& headers) {
  std::string text = row.renderHeader(headers) + "\n";
  for (const auto& object : rows) {
    auto line = row.render(object);
    if (!line) return line.error();
    text += *line + "\n";
  }
  return alignColumns(text);
}

std::string alignColumns(std::string_view text) {
  std::vector<Cells> lines;
  for (std::string_view line : splitView(text, '\n')) {
    Cells cells = splitView(line, '\t');
    if (cells.size() > kMaxColumns) {
      size_t offset = size_t(cells[kMaxColumns - 1].data() - line.data());
      cells.resize(kMaxColumns);
      cells.back() = line.substr(offset);
    }
    lines.push_back(std::move(cells));
  }
  std::string out;
  std::vector<size_t> widths;
  formatColumns(lines, 0, lines.size(), widths, out);
  return out;
}

// A word starts at an upper-case letter after a lower-case one, or at the last capital of a run
// followed by a lower-case letter ("TLSStatus" → "TLS Status").
std::string defaultHeader(std::string_view fieldPath) {
  std::string out;
  for (size_t i = 0; i < fieldPath.size(); ++i) {
    char c = fieldPath[i];
    char previous = i > 0 ? fieldPath[i - 1] : '.';
    bool nextLower = i + 1 < fieldPath.size() && isLower(fieldPath[i + 1]);
    bool wordStart = isUpper(c) && (isLower(previous) || isDigit(previous) || (isUpper(previous) && nextLower));
    if (c == '.') {
      out += ' ';
      continue;
    }
    if (wordStart) out += ' ';
    out += toUpper(c);
  }
  return out;
}

Result<ListingFormat> ListingFormat::parse(std::string_view flag, std::string_view defaultTable) {
  std::string_view format = flag.empty() || flag == "table" ? defaultTable : flag;
  if (format == "json") {
    auto row = Template::parse("{{json .}}");
    if (!row) return row.error();
    return ListingFormat(Kind::Json, std::move(*row));
  }
  bool table = format.starts_with("table");
  auto row = Template::parse(table ? trimSpaces(format.substr(5)) : format, TextEscapes::Interpret);
  if (!row) return row.error();
  return ListingFormat(table ? Kind::Table : Kind::Template, std::move(*row));
}

Result<std::string> ListingFormat::render(const std::vector<nlohmann::json>& rows, const Headers& headers) const {
  if (kind_ == Kind::Table) return renderTable(row_, rows, headers);
  std::string out;
  for (const auto& object : rows) {
    auto line = row_.render(object);
    if (!line) return line.error();
    out += *line + "\n";
  }
  return out;
}

Result<InspectFormat> InspectFormat::parse(std::string_view flag) {
  if (flag.empty()) return InspectFormat(Kind::Indented, std::nullopt);
  if (flag == "json") return InspectFormat(Kind::Json, std::nullopt);
  auto tmpl = Template::parse(flag, TextEscapes::Keep);
  if (!tmpl) return tmpl.error();
  return InspectFormat(Kind::Template, std::move(*tmpl));
}

Result<std::string> InspectFormat::render(const std::vector<nlohmann::json>& objects) const {
  if (kind_ != Kind::Template) return toJson(json(objects), kind_ == Kind::Indented ? 4 : 0) + "\n";
  std::string out;
  for (const auto& object : objects) {
    auto text = tmpl_->render(object);
    if (!text) return text.error();
    out += *text + "\n";
  }
  return out;
}

std::string toJson(const nlohmann::json& value, int indent) {
  std::string out;
  appendJson(out, value, indent, 0);
  return out;
}

}  // namespace shoal::cli
