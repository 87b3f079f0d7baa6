// --format against docker's documented behaviour (docs.docker.com "Format command and log
// output", `docker node ls --format`, `docker node inspect --format`) and Go's text/template.
#include "tools/shoal/format.h"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

using nlohmann::json;
using shoal::cli::alignColumns;
using shoal::cli::defaultHeader;
using shoal::cli::InspectFormat;
using shoal::cli::ListingFormat;
using shoal::cli::renderTable;
using shoal::cli::Template;
using shoal::cli::TextEscapes;
using shoal::cli::toJson;

namespace {

// The output, or "error: " and the message, so each check is one line.
std::string run(std::string_view format, const json& dot = json::object(),
                TextEscapes escapes = TextEscapes::Interpret) {
  auto tmpl = Template::parse(format, escapes);
  if (!tmpl) return "error: " + tmpl.error().message;
  auto out = tmpl->render(dot);
  return out ? *out : "error: " + out.error().message;
}

std::vector<json> nodes() {
  return {
      {{"ID", "4x5xt8kfy0zjfwv2ib5urkwfd"}, {"Hostname", "manager1"}, {"Status", "Ready"},
       {"ManagerStatus", "Leader"}},
      {{"ID", "b9yhvxa8fkxsw4vqzsqr8v7qz"}, {"Hostname", "worker-long-name-2"}, {"Status", "Ready"},
       {"ManagerStatus", ""}},
  };
}

json inspectedNode() {
  return json::parse(R"({"ID":"4x5x","Spec":{"Role":"manager","Labels":{"zone":"b","disk":"ssd"}},
    "Status":{"State":"ready","Addr":"10.0.0.1"},"Version":{"Index":42},
    "Description":{"Engine":{"Plugins":[{"Type":"Network","Name":"overlay"},{"Type":"Volume","Name":"local"}]}}})");
}

}  // namespace

TEST_CASE("docker's examples") {
  SUBCASE("{{.Hostname}} over node rows: one hostname per line") {
    auto format = ListingFormat::parse("{{.Hostname}}", "table {{.ID}}");
    REQUIRE(format);
    CHECK(format->kind() == ListingFormat::Kind::Template);
    CHECK(*format->render(nodes()) == "manager1\nworker-long-name-2\n");
  }
  SUBCASE("{{.Status.State}} on inspect") {
    auto format = InspectFormat::parse("{{.Status.State}}");
    REQUIRE(format);
    CHECK(*format->render({inspectedNode()}) == "ready\n");
  }
  SUBCASE("{{json .}}: compact, keys sorted") {
    CHECK(run("{{json .}}", json::parse(R"({"b":1,"a":{"d":[1,"x"],"c":null}})")) ==
          R"({"a":{"c":null,"d":[1,"x"]},"b":1})");
    CHECK(run("{{json .Spec.Labels}}", inspectedNode()) == R"({"disk":"ssd","zone":"b"})");
  }
  SUBCASE("table {{.ID}}\\t{{.Hostname}}: header, aligned rows") {
    auto format = ListingFormat::parse("table {{.ID}}\\t{{.Hostname}}", "");
    REQUIRE(format);
    CHECK(format->kind() == ListingFormat::Kind::Table);
    // The ID column is as wide as the longest ID (25) plus 3.
    std::string gap(3, ' ');
    CHECK(*format->render(nodes()) == "ID" + std::string(26, ' ') + "HOSTNAME\n" +
                                          "4x5xt8kfy0zjfwv2ib5urkwfd" + gap + "manager1\n" +
                                          "b9yhvxa8fkxsw4vqzsqr8v7qz" + gap + "worker-long-name-2\n");
  }
  SUBCASE("a short column is still 10 wide") {
    auto format = ListingFormat::parse("table {{.A}}\\t{{.B}}\\t{{.C}}", "");
    REQUIRE(format);
    auto out = format->render({{{"A", "x"}, {"B", "yy"}, {"C", "z"}}});
    CHECK(*out == "A         B         C\nx         yy        z\n");
  }
  SUBCASE("\"\" and \"table\" are the command's default table") {
    for (std::string_view flag : {"", "table"}) {
      auto format = ListingFormat::parse(flag, "table {{.Hostname}}\t{{.ManagerStatus}}");
      REQUIRE(format);
      CHECK(*format->render(nodes()) ==
            "HOSTNAME             MANAGER STATUS\nmanager1             Leader\nworker-long-name-2   \n");
    }
  }
  SUBCASE("ListingFormat json: one object per line") {
    auto format = ListingFormat::parse("json", "table {{.ID}}");
    REQUIRE(format);
    CHECK(format->kind() == ListingFormat::Kind::Json);
    CHECK(*format->render({{{"b", 2}, {"a", "x"}}, {{"a", true}}}) == "{\"a\":\"x\",\"b\":2}\n{\"a\":true}\n");
  }
  SUBCASE("InspectFormat \"\": an indented array, 4 spaces") {
    auto format = InspectFormat::parse("");
    REQUIRE(format);
    CHECK(format->kind() == InspectFormat::Kind::Indented);
    CHECK(*format->render({{{"ID", "a"}, {"Spec", {{"L", json::array({1, 2})}, {"E", json::object()}}}}}) ==
          "[\n"
          "    {\n"
          "        \"ID\": \"a\",\n"
          "        \"Spec\": {\n"
          "            \"E\": {},\n"
          "            \"L\": [\n"
          "                1,\n"
          "                2\n"
          "            ]\n"
          "        }\n"
          "    }\n"
          "]\n");
    CHECK(*format->render({}) == "[]\n");
  }
  SUBCASE("InspectFormat json: the array on one line") {
    auto format = InspectFormat::parse("json");
    REQUIRE(format);
    CHECK(*format->render({{{"a", 1}}, {{"b", 2}}}) == "[{\"a\":1},{\"b\":2}]\n");
  }
  SUBCASE("inspect formats keep \\t and \\n of the text; listings read them") {
    CHECK(run("a\\tb\\n{{.}}", "x", TextEscapes::Keep) == "a\\tb\\nx");
    CHECK(run("a\\tb\\n{{.}}", "x", TextEscapes::Interpret) == "a\tb\nx");
    auto format = InspectFormat::parse("{{.ID}}\\t");
    REQUIRE(format);
    CHECK(*format->render({inspectedNode()}) == "4x5x\\t\n");
  }
}

TEST_CASE("defaultHeader") {
  CHECK(defaultHeader("ManagerStatus") == "MANAGER STATUS");
  CHECK(defaultHeader("TLSStatus") == "TLS STATUS");
  CHECK(defaultHeader("Status.State") == "STATUS STATE");
  CHECK(defaultHeader("ID") == "ID");
  CHECK(defaultHeader("Hostname") == "HOSTNAME");
}

TEST_CASE("header rows") {
  auto header = [](std::string_view format, const shoal::cli::Headers& headers = {}) {
    auto tmpl = Template::parse(format);
    REQUIRE(tmpl);
    return tmpl->renderHeader(headers);
  };
  CHECK(header("{{.ID}}\t{{.ManagerStatus}}") == "ID\tMANAGER STATUS");
  CHECK(header("{{.Status}}", {{"Status", "STATE"}}) == "STATE");
  CHECK(header("{{upper .Name}} {{json .Spec}} {{truncate .ID 3}}") == "NAME SPEC ID");
  CHECK(header("{{index .Labels \"zone\"}}") == "ZONE");
  CHECK(header("{{range .Ports}}{{.X}},{{end}}") == "PORTS");
  CHECK(header("{{printf \"%-8s|\" .Name}}") == "NAME    |");
  CHECK(header("a{{.Name.Missing.Field}}b") == "aNAME MISSING FIELDb");
  CHECK(header("{{.A}}{{len 1}}{{.B}}") == "A");  // an error ends the header quietly
}

TEST_CASE("alignColumns is Go's tabwriter(10, 1, 3, ' ')") {
  CHECK(alignColumns("a\tb\n") == "a         b\n");
  CHECK(alignColumns("a\tb\nlonger-than-ten\tc\n") == "a                 b\nlonger-than-ten   c\n");
  // A line without a tab ends the column block: the lines after it align on their own.
  CHECK(alignColumns("aaaaaaaaaaaaaaa\tb\nbreak\nc\td") == "aaaaaaaaaaaaaaa   b\nbreak\nc         d");
  CHECK(alignColumns("x\t\ty\n") == "x                   y\n");
  CHECK(alignColumns("é\tb") == "é         b");  // widths count runes
  CHECK(alignColumns("") == "");
  std::string manyTabs(100000, '\t');
  CHECK(alignColumns(manyTabs + "x").ends_with("\tx"));  // bounded recursion, not a crash
}

TEST_CASE("printing values as Go does") {
  json dot = {{"s", "str"}, {"i", 42}, {"neg", -7}, {"f", 1.5}, {"big", 1e6}, {"fl", 2.0}, {"small", 0.00001},
              {"b", true}, {"n", nullptr}, {"l", {"a", 1, true}}, {"m", {{"z", 1}, {"a", "x"}}}};
  CHECK(run("{{.s}} {{.i}} {{.neg}} {{.f}} {{.fl}} {{.b}}", dot) == "str 42 -7 1.5 2 true");
  CHECK(run("{{.big}} {{.small}} {{1.25e-7}} {{1234567.5}} {{123456.5}}", dot) ==
        "1000000 1e-05 1.25e-07 1.2345675e+06 123456.5");
  CHECK(run("{{.n}} {{.missing}} {{.missing.deeper}}", dot) == "<no value> <no value> <no value>");
  CHECK(run("{{.l}} {{.m}}", dot) == "[a 1 true] map[a:x z:1]");
  CHECK(run("{{print .n}} {{print .l .m}}", dot) == "<nil> [a 1 true] map[a:x z:1]");
  CHECK(run("{{.}}", "plain") == "plain");
  CHECK(run("{{$}}", 5) == "5");
}

TEST_CASE("literals") {
  CHECK(run("{{\"a\\tb\\u00e9\\x41\"}}") == "a\tbéA");
  CHECK(run("{{`raw\\n`}}") == "raw\\n");
  CHECK(run("{{'a'}} {{'\\n'}} {{'é'}}") == "97 10 233");
  CHECK(run("{{1}} {{-2}} {{0x1F}} {{1_000}} {{3.5}} {{true}} {{false}}") == "1 -2 31 1000 3.5 true false");
  CHECK(run("{{print nil}}") == "<nil>");
}

TEST_CASE("fields, variables, pipelines") {
  json node = inspectedNode();
  CHECK(run("{{.Spec.Role}}/{{.Version.Index}}", node) == "manager/42");
  CHECK(run("{{$x := .Spec}}{{$x.Role}}", node) == "manager");
  CHECK(run("{{$x := 1}}{{$x = 2}}{{$x}}", node) == "2");
  CHECK(run("{{$.ID}}", node) == "4x5x");
  CHECK(run("{{.Spec.Role | upper}}", node) == "MANAGER");
  CHECK(run("{{.Spec.Role | printf \"%s!\" | upper}}", node) == "MANAGER!");
  CHECK(run("{{(index .Spec.Labels \"zone\") | upper}}", node) == "B");
  CHECK(run("{{(.Spec).Role}}", node) == "manager");
  CHECK(run("{{len (split \"a,b,c\" \",\")}}") == "3");
}

TEST_CASE("if, else if, else, with") {
  json dot = {{"a", 1}, {"z", 0}, {"e", ""}, {"s", "x"}, {"l", json::array()}, {"m", json::object()}};
  CHECK(run("{{if .a}}yes{{end}}", dot) == "yes");
  CHECK(run("{{if .z}}yes{{else}}no{{end}}", dot) == "no");
  for (const char* falsy : {".z", ".e", ".l", ".m", ".missing", "false", "0", "\"\""}) {
    CHECK(run(std::string("{{if ") + falsy + "}}t{{else}}f{{end}}", dot) == "f");
  }
  CHECK(run("{{if .z}}1{{else if .e}}2{{else if .s}}3{{else}}4{{end}}", dot) == "3");
  CHECK(run("{{if eq .s \"x\" \"y\"}}in{{end}}", dot) == "in");
  CHECK(run("{{if ne .a 2}}ne{{end}}{{if not .z}} not{{end}}", dot) == "ne not");
  CHECK(run("{{and .a .s}} {{and .a .z .s}} {{or .z .e}} {{or .z .s}}", dot) == "x 0  x");
  CHECK(run("{{if and (lt .a 2) (le 1 .a) (gt 3 .a) (ge .a 1)}}ok{{end}}", dot) == "ok");
  // and/or stop at the argument that decides, as Go's do since 1.18: no error from `len 1`.
  CHECK(run("{{and .z (len 1)}}|{{or .s (len 1)}}|{{.a | and .s}}|{{.z | or .e}}", dot) == "0|x|1|0");
  CHECK(run("{{and}}") == "error: template: 1:3: wrong number of args for and: want at least 1 got 0");
  CHECK(run("{{if lt \"abc\" \"abd\"}}less{{end}}", dot) == "less");
  CHECK(run("{{eq 1 1.0}} {{eq .missing nil}} {{eq .s .missing}}", dot) == "true true false");
  CHECK(run("{{with .s}}[{{.}}]{{end}}{{with .e}}never{{else}}empty{{end}}", dot) == "[x]empty");
  CHECK(run("{{with .z}}0{{else with .s}}{{.}}{{end}}", dot) == "x");
  CHECK(run("{{with $v := .a}}{{$v}}{{end}}", dot) == "1");
  CHECK(run("{{if $v := .s}}{{$v}}{{end}}", dot) == "x");
}

TEST_CASE("range") {
  json dot = {{"l", {"a", "b", "c"}}, {"m", {{"y", 2}, {"x", 1}}}, {"e", json::array()}};
  CHECK(run("{{range .l}}{{.}},{{end}}", dot) == "a,b,c,");
  CHECK(run("{{range $i, $v := .l}}{{$i}}={{$v}} {{end}}", dot) == "0=a 1=b 2=c ");
  CHECK(run("{{range $v := .l}}{{$v}}{{end}}", dot) == "abc");
  CHECK(run("{{$last := \"\"}}{{range $last = .l}}{{end}}{{$last}}", dot) == "c");
  CHECK(run("{{range $k, $v := .m}}{{$k}}:{{$v}} {{end}}", dot) == "x:1 y:2 ");
  CHECK(run("{{range .m}}{{.}}{{end}}", dot) == "12");
  CHECK(run("{{range .e}}x{{else}}none{{end}}{{range .missing}}x{{else}}nil{{end}}", dot) == "nonenil");
  CHECK(run("{{range .l}}{{if eq . \"b\"}}{{continue}}{{end}}{{.}}{{end}}", dot) == "ac");
  CHECK(run("{{range .l}}{{if eq . \"b\"}}{{break}}{{end}}{{.}}{{end}}", dot) == "a");
  CHECK(run("{{range .l}}{{$.m.x}}{{end}}", dot) == "111");
  CHECK(run("{{range .Description.Engine.Plugins}}{{.Type}}/{{.Name}} {{end}}", inspectedNode()) ==
        "Network/overlay Volume/local ");
}

TEST_CASE("trimming and comments") {
  CHECK(run("a  {{- 1 -}}  b") == "a1b");
  CHECK(run("a\n\t{{- 1}} b") == "a1 b");
  CHECK(run("a {{1 -}}\n\n b") == "a 1b");
  CHECK(run("{{-3}}") == "-3");  // not a trim marker without a space
  CHECK(run("a{{/* a comment */}}b") == "ab");
  CHECK(run("a {{- /* trimmed */ -}} b") == "ab");
  CHECK(run("{{range .}}\n  {{- .}}\n{{- end}}", json::array({1, 2})) == "12");
}

TEST_CASE("functions") {
  json dot = {{"s", "hello wORLD-x_y"}, {"l", {"a", "b"}}, {"m", {{"k", "v"}}}, {"n", 7}};
  CHECK(run("{{upper .s}}|{{lower .s}}|{{title .s}}", dot) == "HELLO WORLD-X_Y|hello world-x_y|Hello WORLD-X_y");
  CHECK(run("{{join .l \", \"}} {{join .missing \",\"}}", dot) == "a, b ");
  CHECK(run("{{split \"a:b::c\" \":\"}} {{split \"ab\" \"\"}}", dot) == "[a b  c] [a b]");
  CHECK(run("{{len .s}} {{len .l}} {{len .m}} {{len .missing}}", dot) == "15 2 1 0");
  CHECK(run("{{index .m \"k\"}}|{{index .m \"none\"}}|{{index .l 1}}|{{index . \"m\" \"k\"}}", dot) == "v||b|v");
  CHECK(run("{{pad .n 2 1}}|{{pad \"x\" 2 1}}|{{pad \"\" 2 1}}", dot).starts_with("error:"));
  CHECK(run("{{pad \"x\" 2 1}}|{{pad \"\" 2 1}}|", dot) == "  x ||");
  CHECK(run("{{truncate .s 5}}|{{truncate \"ab\" 5}}", dot) == "hello|ab");
  CHECK(run("{{print \"a\" 1 2 \"b\"}}|{{println 1 \"a\"}}", dot) == "a1 2b|1 a\n");
  CHECK(run("{{json .m}} {{json \"<&>\"}} {{json 1.5}} {{json .missing}}", dot) == "{\"k\":\"v\"} \"<&>\" 1.5 null");
}

TEST_CASE("printf") {
  CHECK(run("{{printf \"%s|%d|%v|%q\" \"a\" 42 true \"q\\\"\"}}") == "a|42|true|\"q\\\"\"");
  CHECK(run("{{printf \"[%5s][%-5s][%05d][%-4d][%.2s][%x][%X][%t][%c]\" \"ab\" \"ab\" 42 7 \"abc\" 255 \"hi\" true 65}}") ==
        "[   ab][ab   ][00042][7   ][ab][ff][6869][true][A]");
  CHECK(run("{{printf \"%.2f %e %+d %%\" 3.14159 1234.5 5}}") == "3.14 1.234500e+03 +5 %");
  CHECK(run("{{printf \"%d %s\" \"x\" 3}}") == "%!d(string=x) %!s(int=3)");
  CHECK(run("{{printf \"%d %d\" 1}}") == "1 %!d(MISSING)");
  CHECK(run("{{printf \"%d\" 1 \"x\"}}") == "1%!(EXTRA string=x)");
  CHECK(run("{{printf \"%v %v\" .l .m}}", {{"l", {1, 2}}, {"m", {{"a", 1}}}}) == "[1 2] map[a:1]");
  CHECK(run("{{printf \"%-10s|\" .Name}}", {{"Name", "n"}}) == "n         |");
}

TEST_CASE("errors say where, as Go's do") {
  CHECK(run("{{.A}} xxxx{{uper .B}}") == "error: template: 1:14: function \"uper\" not defined");
  CHECK(run("line1\n{{if .A}}") == "error: template: 2:3: unexpected EOF: {{if}} has no {{end}}");
  CHECK(run("{{end}}") == "error: template: 1:3: unexpected {{end}}");
  CHECK(run("{{else}}") == "error: template: 1:3: unexpected {{else}}");
  CHECK(run("{{.A") == "error: template: 1:1: unclosed action");
  CHECK(run("{{$x}}") == "error: template: 1:3: undefined variable \"$x\"");
  CHECK(run("{{\"abc}}") == "error: template: 1:3: unterminated quoted string");
  CHECK(run("{{(.A}}") == "error: template: 1:6: unclosed left paren");
  CHECK(run("{{.A)}}") == "error: template: 1:5: unexpected \")\" in command");
  CHECK(run("{{}}") == "error: template: 1:3: missing value for command");
  CHECK(run("{{if}}{{end}}") == "error: template: 1:5: missing value for if");
  CHECK(run("{{if nil}}{{end}}") == "error: template: 1:6: nil is not a command");
  CHECK(run("{{break}}") == "error: template: 1:3: {{break}} outside {{range}}");
  CHECK(run("{{@}}") == "error: template: 1:3: bad character U+0040");
  CHECK(run("{{/* open") == "error: template: 1:1: unclosed comment");
  CHECK(run("{{/* c */ .A}}") == "error: template: 1:1: comment ends before closing delimiter");
  CHECK(run("{{template \"x\"}}") == "error: template: 1:3: {{template}} is not supported by shoal's --format");
  CHECK(run("{{1x}}") == "error: template: 1:3: bad number syntax: \"1x\"");
  // Execution errors.
  CHECK(run("{{upper 1 2}}") == "error: template: 1:3: wrong number of args for upper: want 1 got 2");
  CHECK(run("{{.A.B}}", {{"A", "s"}}) == "error: template: 1:3: can't evaluate field B in type string");
  CHECK(run("a\n {{index .L 5}}", {{"L", {1}}}) == "error: template: 2:4: error calling index: index out of range: 5");
  CHECK(run("{{len 3}}") == "error: template: 1:3: error calling len: len of type int");
  CHECK(run("{{eq .A 1}}", {{"A", "s"}}) == "error: template: 1:3: error calling eq: incompatible types for comparison");
  CHECK(run("{{lt .A .A}}", {{"A", true}}) == "error: template: 1:3: error calling lt: invalid type for comparison");
  CHECK(run("{{range .A}}{{end}}", {{"A", 3}}) == "error: template: 1:3: range can't iterate over 3");
  CHECK(run("{{.A 1}}") == "error: template: 1:3: can't give argument to non-function .A");
  CHECK(run("{{upper .A}}", {{"A", 1}}) ==
        "error: template: 1:3: error calling upper: wrong type for value; expected string; got int");
  auto listing = ListingFormat::parse("table {{.ID | uper}}", "");
  REQUIRE_FALSE(listing);
  // Positions count in the template after "table ", as docker parses it.
  CHECK(listing.error().message == "template: 1:9: function \"uper\" not defined");
}

TEST_CASE("toJson writes what Go's encoding/json writes") {
  CHECK(toJson(json::parse(R"({"z":[],"a":{},"m":null})")) == R"({"a":{},"m":null,"z":[]})");
  CHECK(toJson(json("tab\there \"q\" \\ \x01 \xe2\x80\xa8")) == R"("tab\there \"q\" \\ \u0001 \u2028")");
  CHECK(toJson(json(std::string("bad \xff byte"))) == R"("bad \ufffd byte")");
  CHECK(toJson(json(2.0)) == "2");
  CHECK(toJson(json(0.0000001)) == "1e-7");
  CHECK(toJson(json(1e21)) == "1e+21");
  CHECK(toJson(json(-12345.678)) == "-12345.678");
  CHECK(toJson(json::array(), 4) == "[]");
}

TEST_CASE("no input crashes parse or render") {
  std::mt19937 random(20261130);
  const std::vector<std::string> pieces = {"{{", "}}", "{{-", " -}}", ".", ".A", ".B.C", "$", "$x", ":=", "=", "|",
                                           "(", ")", "\"s\"", "`r`", "'c'", "1", "-2.5", "if", "else", "end", "range",
                                           "with", "break", "continue", "eq", "len", "index", "printf", "\"%5.2d%q%", "json",
                                           "split", "join", "pad", "truncate", "and", "not", "nil", "true", ",", " ",
                                           "\n", "\\t", "/*", "*/", "\"", "'", "@", "\xff", "é", "0x", "1e999"};
  json dot = {{"A", {{"x", 1}}}, {"B", {{"C", {1, "two", nullptr}}}}, {"L", {"a", "b"}}};
  int parsed = 0;
  for (int round = 0; round < 5000; ++round) {
    std::string text;
    int count = int(random() % 16);
    for (int k = 0; k < count; ++k) {
      if (random() % 8 == 0) {
        text += char(random() % 256);
      } else {
        text += pieces[random() % pieces.size()];
      }
    }
    auto tmpl = Template::parse(text);
    if (!tmpl) {
      CHECK(tmpl.error().message.starts_with("template: "));
      continue;
    }
    ++parsed;
    auto out = tmpl->render(dot);
    if (!out) CHECK(out.error().message.starts_with("template: "));
    (void)tmpl->renderHeader({});
    (void)renderTable(*tmpl, {dot, dot});
  }
  CHECK(parsed > 100);  // the loop reaches the executor, not only the parser's errors
  std::string deep(10000, '(');
  CHECK_FALSE(Template::parse("{{" + deep + "}}"));
  std::string nested;
  for (int i = 0; i < 1000; ++i) nested += "{{if 1}}";
  CHECK_FALSE(Template::parse(nested));
}
