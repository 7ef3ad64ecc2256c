"""Prefect credentials, CSRF, and refusal of bad settings."""

import subprocess

import pytest

from harness import DEMO_DEPLOYMENT, assert_exactly_once, free_port


def run_small_batch(api, fake, total=5):
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False,
                    "runs": [{"parameters": {"i": i}} for i in range(total)],
                    "retry": {"max_attempts": 3, "initial_delay_s": 0.01, "max_delay_s": 0.05}})
    return api.wait_state(b["id"], timeout=30), b["id"]


def test_bearer_from_prefect_api_key(start_floodgated, fake):
    fake.config(auth="Bearer k1")
    api = start_floodgated(env={"PREFECT_API_KEY": "k1"}).client
    final, bid = run_small_batch(api, fake)
    assert final["state"] == "COMPLETED", final
    assert_exactly_once(fake.runs(), bid, 5)
    assert fake.stats()["statuses"].get("401", 0) == 0


def test_basic_from_prefect_api_auth_string_wins_over_key(start_floodgated, fake):
    fake.config(auth="Basic dTpw")  # base64("u:p")
    api = start_floodgated(env={"PREFECT_API_AUTH_STRING": "u:p", "PREFECT_API_KEY": "k1"}).client
    final, bid = run_small_batch(api, fake)
    assert final["state"] == "COMPLETED", final
    assert_exactly_once(fake.runs(), bid, 5)


def test_prefect_api_url_from_environment(start_floodgated, fake):
    api = start_floodgated(prefect_api_url="", env={"PREFECT_API_URL": fake.api_url}).client
    final, bid = run_small_batch(api, fake)
    assert final["state"] == "COMPLETED", final


def test_wrong_credentials_fail_items_with_prefects_401(start_floodgated, fake):
    fake.config(auth="Bearer right")
    api = start_floodgated(env={"PREFECT_API_KEY": "wrong"}).client
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{}] * 2,
                    "tolerated_failure_percentage": 100,
                    "retry": {"max_attempts": 2, "initial_delay_s": 0.01, "max_delay_s": 0.05}})
    final = api.wait_state(b["id"], timeout=30)
    assert final["counts"]["LAUNCH_FAILED"] == 2, final
    assert all("401" in it["last_error"] for it in api.all_runs(b["id"]))
    assert fake.stats()["runs"] == 0


def test_csrf_token_is_fetched_and_sent(api, fake):
    fake.config(csrf_enabled=True)
    final, bid = run_small_batch(api, fake, 20)
    assert final["state"] == "COMPLETED", final
    assert_exactly_once(fake.runs(), bid, 20)
    stats = fake.stats()
    assert stats["requests"]["csrf"] >= 1
    assert stats["statuses"].get("403", 0) <= 1


def test_csrf_enabled_after_start(start_floodgated, fake):
    """CSRF turned on after floodgated learned it was off: a 403 "Invalid CSRF token" makes it
    fetch a token and go on."""
    api = start_floodgated("--bulk", "false").client
    final, _ = run_small_batch(api, fake, 2)
    assert final["state"] == "COMPLETED"
    fake.config(csrf_enabled=True)
    final, bid = run_small_batch(api, fake, 10)
    assert final["state"] == "COMPLETED", final
    assert len(fake.runs_of(bid)) == 10


BAD_SETTINGS = [
    (["--rate", "abc"], {}, "--rate"),
    (["--db", "ftp://x"], {}, "--db"),
    ([], {"FLOODGATE_MAX_IN_FLIGHT": "abc"}, "FLOODGATE_MAX_IN_FLIGHT"),
    (["--max-in-flight", "0"], {}, "--max-in-flight"),
    (["--burst", "-1"], {}, "--burst"),
    (["--adaptive", "maybe"], {}, "--adaptive"),
    (["--listen", "nonsense"], {}, "--listen"),
    (["--prefect-api-url", "ftp://prefect"], {}, "--prefect-api-url"),
    (["--no-such-flag", "1"], {}, "--no-such-flag"),
    ([], {"FLOODGATE_RATE": "10/fortnight"}, "FLOODGATE_RATE"),
    ([], {"PREFECT_API_AUTH_STRING": "nocolon"}, "PREFECT_API_AUTH_STRING"),
]


@pytest.mark.parametrize("args,env,named", BAD_SETTINGS, ids=[s[2] + ("=" + s[0][1] if s[0] else "") for s in BAD_SETTINGS])
def test_bad_setting_exits_nonzero_naming_it(floodgated_bin, fake, tmp_path, args, env, named):
    import os
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOODGATE_", "PREFECT_"))}
    full_env.update(env)
    cmd = [str(floodgated_bin), "--listen", f"127.0.0.1:{free_port()}", "--db", f"sqlite:///{tmp_path}/x.db",
           "--prefect-api-url", fake.api_url]
    # Later flags win, so the bad one goes last.
    cmd += args
    p = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=10)
    assert p.returncode != 0, (p.returncode, p.stdout, p.stderr)
    assert named in p.stderr, p.stderr
    assert not (tmp_path / "x.db").exists() or named != "--db"


def test_help_and_version(floodgated_bin):
    p = subprocess.run([str(floodgated_bin), "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0
    for flag in ("--listen", "--prefect-api-url", "--db", "--rate", "--burst", "--max-in-flight",
                 "--adaptive", "FLOODGATE_RATE"):
        assert flag in p.stdout
    p = subprocess.run([str(floodgated_bin), "--version"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and p.stdout.startswith("floodgated ")


def test_listen_port_in_use_exits_nonzero(start_floodgated, fg):
    other = start_floodgated(wait=False, name="second")
    other.port = fg.port
    other.starts = 1  # keep the port
    import subprocess as sp
    p = sp.run(other.command(), capture_output=True, text=True, timeout=15)
    assert p.returncode != 0
    assert str(fg.port) in p.stderr or "listen" in p.stderr, p.stderr
