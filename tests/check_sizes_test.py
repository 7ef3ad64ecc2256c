#!/usr/bin/env python3
"""Tricky cases of the size check's C++ scanner (tests/check_sizes.py).

Standard library only: `python3 tests/check_sizes_test.py` (pytest collects it too).
"""

import contextlib
import io
import os
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import check_sizes  # noqa: E402


def functions(src):
    return [(f.name, f.first_line, f.lines) for f in check_sizes.find_functions(textwrap.dedent(src))]


class ScannerTest(unittest.TestCase):
    def test_free_function_and_method(self):
        src = """
        namespace a {
        int f(int x) {
          return x;
        }
        void Router::handle(Request r,
                            Responder w) const {
          if (r) {
            w();
          }
        }
        }  // namespace a
        """
        self.assertEqual(functions(src), [("f", 3, 3), ("Router::handle", 7, 5)])

    def test_braces_in_strings_comments_and_characters_do_not_count(self):
        src = """
        void f() {
          const char* s = "}}} {";  // } not the end
          /* { */ char c = '}';
          char d = '{';
          auto e = "\\"}";
        }
        void g() {}
        """
        self.assertEqual(functions(src), [("f", 2, 6), ("g", 8, 1)])

    def test_raw_strings(self):
        src = '''
        constexpr const char* kSql = R"sql(
        CREATE TABLE x ( a } { );
        )sql";
        void f() {
          auto s = R"(})";
          auto t = u8R"x()")x";
        }
        '''
        self.assertEqual(functions(src), [("f", 5, 4)])

    def test_digit_separators_are_not_character_literals(self):
        src = """
        long f() {
          return 1'800'000;
        }
        char g() { return u8'{'; }
        """
        self.assertEqual(functions(src), [("f", 2, 3), ("g", 5, 1)])

    def test_preprocessor_lines_are_ignored(self):
        src = """
        #define OPEN {
        #define LONG(x) \\
          { x }
        void f() {
        #if 1
          int x = 0;
        #endif
        }
        """
        self.assertEqual(functions(src), [("f", 5, 5)])

    def test_classes_namespaces_enums_and_initializers(self):
        src = """
        namespace {
        constexpr int kList[] = {1, 2, 3};
        const std::map<int, int> kMap = {{1, 2}, {3, 4}};
        enum class Kind { kA, kB };
        }
        template <class T>
        class Box final : public Base<T> {
         public:
          Box() = default;
          explicit Box(T v) : value_{v}, other_(v), list_{1, 2} {
            check();
          }
          T get() const override { return value_; }
          int x_{0};
          std::function<void()> fn_{};
         private:
          struct Inner {
            void run() noexcept {
            }
          };
        };
        template <typename T>
        T twice(T v) {
          return v + v;
        }
        """
        self.assertEqual(
            functions(src),
            [("Box", 11, 3), ("get", 14, 1), ("run", 19, 2), ("twice", 24, 3)],
        )

    def test_lambdas_count_with_their_function_and_alone_at_namespace_scope(self):
        src = """
        void f() {
          auto g = [](int x) {
            return x;
          };
          post([this] { run(); });
        }
        auto h = [](int y) -> int {
          return y;
        };
        """
        self.assertEqual(functions(src), [("f", 2, 6), ("h", 8, 3)])

    def test_qualified_names_destructors_operators_and_trailing_returns(self):
        src = """
        Store::~Store() {
        }
        bool Key::operator<(const Key& o) const { return a < o.a; }
        auto Engine::view() const -> nlohmann::json {
          return {};
        }
        Widget::Widget(int a)
            : a_(a) {}
        """
        self.assertEqual(
            functions(src),
            [("Store::~Store", 2, 2), ("Key::operator<", 4, 1), ("Engine::view", 5, 3),
             ("Widget::Widget", 9, 1)],
        )

    def test_control_statements_inside_a_function_are_not_functions(self):
        src = """
        int f(int n) {
          for (int i = 0; i < n; ++i) {
            if (i) {
              while (false) {
              }
            }
          }
          switch (n) {
            case 1: {
              break;
            }
          }
          return n;
        }
        """
        self.assertEqual(functions(src), [("f", 2, 14)])


class CheckTest(unittest.TestCase):
    def run_check(self, files, *args):
        with tempfile.TemporaryDirectory() as root:
            for name, text in files.items():
                with open(os.path.join(root, name), "w", encoding="utf-8") as f:
                    f.write(text)
            with contextlib.redirect_stdout(io.StringIO()):
                return check_sizes.main(["--root", root, *args])

    def test_passes_within_the_limits(self):
        body = "void f() {\n" + "  x();\n" * 58 + "}\n"  # 60 lines from brace to brace
        self.assertEqual(self.run_check({"a.cpp": body}, "--max-function-lines", "60"), 0)

    def test_fails_on_a_long_function(self):
        body = "void f() {\n" + "  x();\n" * 59 + "}\n"  # 61 lines
        self.assertEqual(self.run_check({"a.cpp": body}, "--max-function-lines", "60"), 1)

    def test_fails_on_a_long_file(self):
        self.assertEqual(self.run_check({"a.h": "int x;\n" * 601}, "--max-file-lines", "600"), 1)
        self.assertEqual(self.run_check({"a.h": "int x;\n" * 600}, "--max-file-lines", "600"), 0)


if __name__ == "__main__":
    unittest.main()
