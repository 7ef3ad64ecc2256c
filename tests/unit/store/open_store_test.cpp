#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "store/database_url.h"
#include "store/sqlite_store.h"
#include "store/store.h"
#include "store_test_support.h"

namespace floodgate::store {
namespace {

using testing::make_batch;
using testing::TempDir;

std::string error_of(const std::string& url) {
  try {
    open_store(url);
  } catch (const StoreError& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Runs the test's body with the working directory switched to `dir`.
class WorkingDirectory {
 public:
  explicit WorkingDirectory(const std::filesystem::path& dir)
      : saved_(std::filesystem::current_path()) {
    std::filesystem::current_path(dir);
  }
  ~WorkingDirectory() { std::filesystem::current_path(saved_); }
  WorkingDirectory(const WorkingDirectory&) = delete;
  WorkingDirectory& operator=(const WorkingDirectory&) = delete;

 private:
  std::filesystem::path saved_;
};

TEST(OpenStoreTest, OpensInMemory) {
  auto store = open_store("sqlite://:memory:");
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->insert_batch(make_batch("b"), {}).inserted);
  EXPECT_TRUE(store->get_batch("b").has_value());
  // Each in-memory store is private.
  EXPECT_FALSE(open_store("sqlite://:memory:")->get_batch("b").has_value());
}

TEST(OpenStoreTest, OpensAbsolutePath) {
  TempDir dir;
  const std::string path = dir.file("abs.db");
  auto store = open_store("sqlite://" + path);  // path starts with '/': sqlite:///...
  store->insert_batch(make_batch("b"), {});
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(OpenStoreTest, OpensRelativePaths) {
  TempDir dir;
  WorkingDirectory cwd(dir.path());
  open_store("sqlite://./dot.db")->insert_batch(make_batch("b"), {});
  open_store("sqlite://plain.db")->insert_batch(make_batch("b"), {});
  std::filesystem::create_directory(dir.path() / "sub");
  open_store("sqlite://sub/nested.db")->insert_batch(make_batch("b"), {});
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "dot.db"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "plain.db"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "sub" / "nested.db"));
  // A relative name that looks like an SQLite URI is still a plain file name.
  open_store("sqlite://file:odd.db")->insert_batch(make_batch("b"), {});
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "file:odd.db"));
}

TEST(OpenStoreTest, SchemeIsCaseInsensitive) {
  EXPECT_NE(open_store("SQLite://:memory:"), nullptr);
}

// Port 1 on loopback refuses at once: no server needed. (With a server: test_store_postgres.)
TEST(OpenStoreTest, UnreachablePostgresqlIsAClearErrorWithoutThePassword) {
  for (const std::string url : {"postgresql://floodgate:s3cret@127.0.0.1:1/floodgate",
                                "postgres://floodgate:s3cret@127.0.0.1:1/floodgate?sslmode=disable",
                                "postgresql://floodgate@127.0.0.1:1/floodgate?password=s3cret"}) {
    SCOPED_TRACE(url);
    const std::string error = error_of(url);
    EXPECT_TRUE(error.starts_with("cannot open PostgreSQL database at ")) << error;
    EXPECT_TRUE(contains(error, "Connection refused")) << error;
    EXPECT_FALSE(contains(error, "s3cret")) << error;  // the password never shows
    EXPECT_TRUE(contains(error, "floodgate:***@127.0.0.1:1") || contains(error, "password=***"))
        << error;
  }
  // libpq's own options pass through: a bad sslmode is libpq's error, not floodgate's.
  const std::string bad_option = error_of("postgresql://u:s3cret@127.0.0.1:1/db?sslmode=often");
  EXPECT_TRUE(contains(bad_option, "sslmode")) << bad_option;
  EXPECT_FALSE(contains(bad_option, "s3cret")) << bad_option;
}

TEST(OpenStoreTest, RedactsDatabaseUrls) {
  EXPECT_EQ(redact_database_url("postgresql://u:p%40ss@h:5432/db?sslmode=require"),
            "postgresql://u:***@h:5432/db?sslmode=require");
  EXPECT_EQ(redact_database_url("postgres://h/db?user=u&Password=x&sslmode=verify-full"),
            "postgres://h/db?user=u&Password=***&sslmode=verify-full");
  EXPECT_EQ(redact_database_url("postgresql://h/db?password=x"), "postgresql://h/db?password=***");
  EXPECT_EQ(redact_database_url("postgresql://u@h/db"), "postgresql://u@h/db");
  EXPECT_EQ(redact_database_url("sqlite:///var/lib/floodgate.db"),
            "sqlite:///var/lib/floodgate.db");
}

TEST(OpenStoreTest, BadUrlsNameTheUrlAndTheAcceptedForms) {
  for (const std::string url :
       {"mysql://u@h/db", "sqlite:/tmp/x.db", "floodgate.db", "/tmp/x.db", "sqlite://",
        "sqlite:///tmp/x.db?mode=ro", "http://user:pw@host/x"}) {
    SCOPED_TRACE(url);
    const std::string error = error_of(url);
    EXPECT_TRUE(contains(error, "sqlite:///absolute/path.db")) << error;
    EXPECT_TRUE(contains(error, "sqlite://:memory:")) << error;
    if (url != "http://user:pw@host/x") {
      EXPECT_TRUE(contains(error, url)) << error;
    }
  }
  EXPECT_FALSE(contains(error_of("http://user:pw@host/x"), ":pw@")) << "password leaked";
  EXPECT_TRUE(contains(error_of(""), "no database URL given"));
}

TEST(OpenStoreTest, MissingDirectoryIsAClearError) {
  TempDir dir;
  const std::string path = dir.file("no-such-dir/x.db");
  const std::string error = error_of("sqlite://" + path);
  EXPECT_TRUE(error.starts_with("cannot open SQLite database at " + path + ": ")) << error;
  EXPECT_TRUE(contains(error, "no-such-dir does not exist")) << error;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "no-such-dir"));  // not created
}

TEST(OpenStoreTest, DirectoryIsAClearError) {
  TempDir dir;
  const std::string error = error_of("sqlite://" + dir.path().string());
  EXPECT_TRUE(error.starts_with("cannot open SQLite database at " + dir.path().string())) << error;
  EXPECT_TRUE(contains(error, "is a directory")) << error;
}

TEST(OpenStoreTest, UnreadableFileIsAClearError) {
  if (geteuid() == 0) GTEST_SKIP() << "root ignores file permissions";
  TempDir dir;
  const std::string path = dir.file("locked.db");
  open_store("sqlite://" + path).reset();
  std::filesystem::permissions(path, std::filesystem::perms::none);
  const std::string error = error_of("sqlite://" + path);
  EXPECT_TRUE(error.starts_with("cannot open SQLite database at " + path + ": ")) << error;
  EXPECT_TRUE(contains(error, "Permission denied")) << error;
}

TEST(OpenStoreTest, FileThatIsNotADatabaseIsAClearError) {
  TempDir dir;
  const std::string path = dir.file("notes.txt");
  {
    std::ofstream out(path);
    for (int i = 0; i < 100; ++i) out << "this is not an SQLite database\n";
  }
  const std::string error = error_of("sqlite://" + path);
  EXPECT_TRUE(error.starts_with("cannot open SQLite database at " + path + ": ")) << error;
  EXPECT_TRUE(contains(error, "file is not a database")) << error;
}

}  // namespace
}  // namespace floodgate::store
