"""Access control (issue "hardening"): no open non-loopback bind; with --auth every page, API
and file route refuses a caller without the login; paths typed into the page stay inside the
configured roots (no /etc/passwd, no `..`, no symlink escapes); models never run their own
code unless asked and weights never unpickle objects; no command is a shell string."""

from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path

import pytest

from helpers import free_port, page_message, wait_for

import app
from fabe.paths import OutsideRoots, confine, confine_data, confine_model, is_hub_id

USER, PASSWORD = "ann", "s3cret-pw"
PASSWD = Path("/etc/passwd")
SOURCE_ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(SOURCE_ROOT / "fabe").rglob("*.py"), *(SOURCE_ROOT / "pages").rglob("*.py"),
                  SOURCE_ROOT / "app.py"])
RECORD = {"id": "r1", "input": "int f(void)\n{\n    return 1;\n}", "score": [2.0, 1.0],
          "output": ["int f(void)\n{\n    return 1;\n}", "int f(void)\n{\n    return 2;\n}"]}


# --- binding ------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "my-box.example.org", ""])
def test_a_non_loopback_bind_without_auth_is_refused(host, capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--host", host])  # refused before anything is built or bound
    assert exit_info.value.code == 2
    assert "give --auth user:password" in capsys.readouterr().err


def test_roots_are_documented_and_split_on_the_path_separator(tmp_path, capsys):
    with pytest.raises(SystemExit):
        app.parse_args(["--help"])
    assert "--roots" in capsys.readouterr().out
    assert "--roots DIR:DIR" in (SOURCE_ROOT / "README.md").read_text()
    a, b = tmp_path / "a", tmp_path / "b"
    args = app.parse_args(["--roots", f"{a}{os.pathsep}{b}"])
    roots = app.app_roots(tmp_path / "runs", args.roots)
    assert roots[:3] == [a.resolve(), b.resolve(), (tmp_path / "runs").resolve()] and Path.cwd() not in roots
    assert Path.cwd().resolve() in app.app_roots(tmp_path / "runs")  # the default


# --- confinement ----------------------------------------------------------------------------

@pytest.fixture()
def tree(tmp_path):
    """root/ (allowed) with data and symlinks, and outside/ (not allowed) beside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "data").mkdir(parents=True)
    outside.mkdir()
    (root / "data" / "train.jsonl").write_text("{}\n")
    (outside / "secret.txt").write_text("secret")
    (root / "to-outside").symlink_to(outside)
    (root / "to-secret.txt").symlink_to(outside / "secret.txt")
    (root / "dangling").symlink_to(outside / "not-yet")
    (root / "to-data").symlink_to(root / "data")
    return root, outside


def test_etc_passwd_is_refused_with_the_path_and_the_roots_named(tree):
    root, _ = tree
    with pytest.raises(OutsideRoots) as err:
        confine(str(PASSWD), [root])
    assert str(PASSWD) in str(err.value) and str(root) in str(err.value) and "--roots" in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("typed", ["{root}/../outside/secret.txt", "{root}/data/../../outside",
                                   "{root}/new/../../outside/x", "{root}/to-outside", "{root}/to-outside/secret.txt",
                                   "{root}/to-secret.txt", "{root}/dangling", "{root}/to-outside/new-folder/sub"])
def test_dot_dot_and_symlink_escapes_are_refused(tree, typed):
    root, outside = tree
    with pytest.raises(OutsideRoots) as err:
        confine(typed.format(root=root), [root])
    assert str(outside.resolve()) in str(err.value)  # says where it really points


def test_paths_inside_a_root_are_returned_resolved(tree, monkeypatch):
    root, _ = tree
    assert confine(root / "data" / "train.jsonl", [root]) == (root / "data" / "train.jsonl").resolve()
    assert confine(f"{root}/to-data/train.jsonl", [root]) == (root / "data" / "train.jsonl").resolve()
    assert confine(f"{root}/data/../data", [root]) == (root / "data").resolve()
    monkeypatch.chdir(root)
    assert confine("data/train.jsonl", ["."]) == (root / "data" / "train.jsonl").resolve()
    monkeypatch.setenv("HOME", str(root))
    assert confine("~/data", [root]) == (root / "data").resolve()


def test_a_folder_that_does_not_exist_yet_is_judged_by_its_parents(tree):
    root, _ = tree
    assert confine(root / "exports" / "new" / "model", [root]) == (root / "exports" / "new" / "model").resolve()
    assert not (root / "exports").exists()  # checking creates nothing


def test_a_root_given_through_a_symlink_is_the_folder_it_points_to(tree, tmp_path):
    root, _ = tree
    (tmp_path / "root-link").symlink_to(root)
    assert confine(root / "data", [tmp_path / "root-link"]) == (root / "data").resolve()


def test_embedded_and_hub_ids_are_names_not_paths(tree):
    root, _ = tree
    assert confine_data("embedded", [root]) == "embedded"
    assert confine_model("embedded", [root]) == "embedded"
    assert confine_model("deepseek-ai/deepseek-coder-1.3b-instruct", [root]) == "deepseek-ai/deepseek-coder-1.3b-instruct"
    for not_hub in ["/etc/passwd", "./etc/passwd", "~/x/y", "../etc", "a/../../etc", "a/b/c", ".ssh/id_rsa"]:
        assert not is_hub_id(not_hub), not_hub
    with pytest.raises(OutsideRoots):
        confine_model("/etc/ssl", [root])
    with pytest.raises(OutsideRoots):
        confine_data("deepseek-ai/x", [root / "data"])  # a dataset is always a path


# --- the running app with --auth ------------------------------------------------------------

def _up(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/config").status_code == 401
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python app.py --auth ... --roots ALLOWED` (the runs folder inside ALLOWED) as a user
    starts it; `outside` is not allowed."""
    import signal
    import subprocess
    import sys

    allowed, outside = tmp_path_factory.mktemp("allowed"), tmp_path_factory.mktemp("outside")
    (allowed / "data.jsonl").write_text(json.dumps(RECORD) + "\n")
    (outside / "model").mkdir()
    (outside / "model" / "config.json").write_text("{}")
    (outside / "victim-run").mkdir()
    (allowed / "model-link").symlink_to(outside / "model")
    (allowed / "out-link").symlink_to(outside)
    port = free_port()
    with (allowed / "app.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--auth", f"{USER}:{PASSWORD}",
                                 "--roots", str(allowed), "--runs-dir", str(allowed / "runs")],
                                cwd=SOURCE_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url) or proc.poll() is not None, timeout=180)
        assert proc.poll() is None, (allowed / "app.log").read_text()[-3000:]
        yield url, allowed, outside
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    c = Client(server[0] + "/", auth=(USER, PASSWORD), verbose=False, analytics_enabled=False,
               download_files=False)
    yield c
    c.close()


def _login_cookies(url: str):
    import httpx

    r = httpx.post(f"{url}/login", data={"username": USER, "password": PASSWORD})
    assert r.status_code == 200
    return r.cookies


@pytest.mark.parametrize("route", ["/", "/gradio_api/runs"])
def test_the_page_without_login_shows_only_the_login_form(server, route):
    """Neither the widgets nor the API description (labels, run and checkpoint paths): Gradio
    puts the latter into its login page, app.py blanks it there."""
    import httpx

    page = httpx.get(server[0] + route)
    assert page.status_code == 200 and '"auth_required":true' in page.text.replace(" ", "")
    assert "Preview command" not in page.text and "Dataset (folder" not in page.text
    assert str(server[1]) not in page.text and "/check_dataset" not in page.text
    logged_in = httpx.get(server[0] + route, cookies=_login_cookies(server[0]))
    assert logged_in.status_code == 200 and "Preview command" in logged_in.text
    assert "/check_dataset" in logged_in.text


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_a_browser_logs_in_through_the_login_form(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"])
        page = browser.new_page()
        page.goto(server[0])
        page.get_by_label("username").fill(USER)
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name="Login").click()
        page.wait_for_selector("text=Incorrect Credentials", timeout=30_000)
        assert page.get_by_text("Preview command").count() == 0
        page.get_by_label("username").fill(USER)  # a failed login clears the form
        page.get_by_label("password").fill(PASSWORD)
        page.get_by_role("button", name="Login").click()
        page.wait_for_selector("text=Preview command", timeout=60_000)
        browser.close()


@pytest.mark.parametrize("method,route", [
    ("GET", "/config"), ("GET", "/gradio_api/info"), ("GET", "/gradio_api/openapi.json"),
    ("POST", "/gradio_api/queue/join"), ("GET", "/gradio_api/queue/data?session_hash=abc"),
    ("POST", "/gradio_api/call/check_dataset"), ("POST", "/gradio_api/run/check_dataset"),
    ("POST", "/gradio_api/upload"), ("GET", "/gradio_api/file={allowed}/data.jsonl"),
    ("GET", "/gradio_api/file/{allowed}/data.jsonl"), ("GET", "/gradio_api/file=/etc/passwd"),
])
def test_every_route_refuses_a_caller_without_the_login(server, method, route):
    import httpx

    url, allowed, _ = server
    body = {"data": ["/etc/passwd"], "fn_index": 0, "session_hash": "abc"}
    r = httpx.request(method, url + route.format(allowed=allowed), json=body, follow_redirects=False)
    assert r.status_code in (401, 403), (route, r.status_code, r.text[:200])
    assert "root:" not in r.text and "Preview command" not in r.text


def test_gradio_client_needs_the_login(server):
    from gradio_client import Client

    with pytest.raises(ValueError, match="credentials were not provided"):
        Client(server[0] + "/", verbose=False, analytics_enabled=False)
    with pytest.raises(ValueError, match="Could not login"):
        Client(server[0] + "/", auth=(USER, "wrong"), verbose=False, analytics_enabled=False)


def test_with_the_login_the_api_works_and_a_file_downloads_only_with_it(server, client):
    import httpx

    message, preview = client.predict(str(server[1] / "data.jsonl"), api_name="/check_dataset")
    assert "records" in message and preview["data"][0][0] == "r1"
    saved = client.predict(api_name="/save_form")  # a file the page offers for download
    assert httpx.get(saved["url"]).status_code == 401
    got = httpx.get(saved["url"], cookies=_login_cookies(server[0]))
    assert got.status_code == 200 and "model: embedded" in got.text


PASSWD_CONTENT = "root:x:0:0"


def _launch(client, data: str = "embedded", model: str = "embedded", run_name: str = "") -> str:
    """The Launch button's message; the page's /launch takes the options by name."""
    return client.predict(data=data, model=model, gpus=[], run_name=run_name, api_name="/launch")[0]


@pytest.mark.parametrize("typed", [str(PASSWD), "../../../../../../../../etc/passwd", "~/../../etc/passwd"])
def test_the_dataset_pickers_refuse_etc_passwd_and_never_show_it(client, typed):
    calls = {
        "check_dataset": lambda: client.predict(typed, api_name="/check_dataset"),
        "clean split": lambda: client.predict(typed, api_name="/on_list"),
        "evaluate split": lambda: client.predict(["embedded"], typed, 1, 2, "beam", 8, None, api_name="/evaluate"),
        "defense split": lambda: client.predict("embedded", "embedded", typed, ["none"], 1, 2, api_name="/defend"),
        "launch data": lambda: _launch(client, data=typed),
    }
    for name, call in calls.items():
        message = page_message(call)
        assert "outside the folders this app may use" in message and str(PASSWD) in message, (name, message)
        assert PASSWD_CONTENT not in message, name


@pytest.mark.parametrize("api", ["load_form", "on_upload"])
def test_upload_fields_cannot_be_pointed_at_a_server_file(server, api):
    """A file input given a server path instead of an upload is refused by Gradio."""
    import httpx

    cookies = _login_cookies(server[0])
    fake = {"path": str(PASSWD), "meta": {"_type": "gradio.FileData"}}
    event = httpx.post(f"{server[0]}/gradio_api/call/{api}", cookies=cookies, json={"data": [fake]}).json()
    answer = httpx.get(f"{server[0]}/gradio_api/call/{api}/{event['event_id']}", cookies=cookies, timeout=60).text
    assert answer.startswith("event: error") and PASSWD_CONTENT not in answer


def test_model_pickers_refuse_a_symlink_out_of_the_roots(server, client):
    _, allowed, outside = server
    link = str(allowed / "model-link")
    assert page_message(lambda: client.predict(link, api_name="/load_cleaner")).startswith(f"**Cannot load** `{link}`")
    assert str(outside / "model") in page_message(lambda: client.predict(link, "int f(void)\n{\n}", 2, 0.5, "beam", 8,
                                                                          api_name="/clean"))
    assert "outside the folders" in page_message(lambda: client.predict(link, "embedded", "embedded", ["none"], 1, 2,
                                                                        api_name="/defend"))
    assert "outside the folders" in page_message(lambda: client.predict([link], "embedded", 1, 2, "beam", 8, None,
                                                                        api_name="/evaluate"))
    assert f"model: {link}" in _launch(client, data=str(allowed / "data.jsonl"), model=link)


def test_export_and_run_name_cannot_write_outside(server, client):
    _, allowed, outside = server
    for target in [outside / "exported", allowed / "out-link" / "exported", allowed / ".." / "escaped"]:
        message = client.predict("embedded", str(target), api_name="/export")
        assert message.startswith("**Export failed:**") and "outside the folders" in message
    assert not (outside / "exported").exists() and not (allowed.parent / "escaped").exists()
    for name in ["../escaped-run", str(outside / "run"), ".."]:
        message = _launch(client, run_name=name)
        assert "Cannot launch" in message and "run name" in message
    assert not (allowed / "escaped-run").exists() and not (outside / "run").exists()


def test_run_actions_only_take_a_listed_run(server, client):
    _, _, outside = server
    message = page_message(lambda: client.predict(f"../../{outside.name}/victim-run", True, api_name="/delete_run"))
    assert "not in the list of choices" in message
    assert (outside / "victim-run").is_dir()


# --- models, weights, commands ----------------------------------------------------------------

@pytest.fixture()
def marker(tmp_path) -> Path:
    return tmp_path / "CODE-RAN"


def test_a_model_folder_that_needs_its_own_code_is_refused_without_the_flag(tmp_path, marker):
    from fabe.training.modeling import ModelLoadError, load_causal_lm
    from fabe.defense.victims import Victim
    from fabe.embedded import SHIPPED_CLEANER

    folder = tmp_path / "custom"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((SHIPPED_CLEANER / name).read_bytes())
    (folder / "config.json").write_text(json.dumps({"model_type": "custom-evil", "auto_map": {
        "AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel",
        "AutoModelForSequenceClassification": "evil.EvilModel"}}))
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(ModelLoadError, match="contains custom code"):
        load_causal_lm(str(folder))
    with pytest.raises(ValueError, match="contains custom code"):
        Victim.load(str(folder), device="cpu")
    assert not marker.exists()


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def test_pickled_weights_never_run_code(tmp_path, marker):
    from fabe.embedded import SHIPPED_CLEANER
    from fabe.training.modeling import ModelLoadError, load_causal_lm

    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((SHIPPED_CLEANER / name).read_bytes())
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _RunsCode(marker)}, protocol=2))
    with pytest.raises(ModelLoadError, match="Weights only load failed"):
        load_causal_lm(str(folder))
    assert not marker.exists()


def test_trust_remote_code_is_off_by_default_everywhere():
    import inspect

    from fabe.training.modeling import load_causal_lm, load_tokenizer
    from fabe.training.config import TrainConfig

    assert TrainConfig().trust_remote_code is False
    for fn in (load_causal_lm, load_tokenizer):
        assert inspect.signature(fn).parameters["trust_remote_code"].default is False


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func), {k.arg: k.value for k in node.keywords}


def test_source_runs_no_shell_strings_and_no_unsafe_loaders():
    banned = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput", "pickle.load",
              "pickle.loads", "eval", "exec"}
    problems = []
    for path in SOURCES:
        for node, name, kw in _calls(path):
            where = f"{path.relative_to(SOURCE_ROOT)}:{node.lineno}"
            if name in banned:
                problems.append(f"{where}: {name}")
            if "shell" in kw and not (isinstance(kw["shell"], ast.Constant) and kw["shell"].value is False):
                problems.append(f"{where}: {name}(shell=...)")
            if name.endswith("torch.load"):
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
    assert len(SOURCES) > 20 and not problems, problems


def test_every_hugging_face_load_says_trust_remote_code_and_none_says_true():
    problems, seen = [], 0
    for path in SOURCES:
        for node, name, kw in _calls(path):
            if not name.endswith("from_pretrained") or name.startswith("PeftModel"):
                continue
            seen += 1
            where = f"{path.relative_to(SOURCE_ROOT)}:{node.lineno}: {name}"
            flag = kw.get("trust_remote_code")
            if flag is None:
                problems.append(f"{where} leaves trust_remote_code to transformers (it may prompt)")
            elif isinstance(flag, ast.Constant) and flag.value is not False:
                problems.append(f"{where} sets trust_remote_code={flag.value!r}")
            if isinstance(kw.get("use_safetensors"), ast.Constant) and kw["use_safetensors"].value is False:
                problems.append(f"{where} turns safetensors off")
    assert seen >= 3 and not problems, problems
