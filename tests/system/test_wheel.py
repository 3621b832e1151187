"""The wheel: built from the repository's files, it holds every template, static and data file of the packages, and
installed into a fresh virtualenv (not the editable checkout) it serves the console login, the FAQ admin pages and the
merchants' web chat."""

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("core", "knowledge", "merchants", "invoices", "ticketing", "handlers", "console", "bot", "migrations")


def project_files() -> list[str]:
    """Every file of the working tree that git tracks or would track (ignored files left out)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    return [name for name in listed.stdout.decode().split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built (without build isolation: offline) from a copy of the project's files."""
    source = tmp_path_factory.mktemp("source")
    for name in project_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO / name).read_bytes())
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("merchant_assist-*.whl")
    return built


def test_the_wheel_holds_every_file_of_every_package(wheel):
    inside = set(zipfile.ZipFile(wheel).namelist())
    expected = [name for name in project_files() if name.split("/")[0] in PACKAGES and "/__pycache__/" not in name]
    assert [name for name in expected if name not in inside] == []
    assert any(name.startswith("console/templates/admin_faq") for name in inside)


def test_the_installed_wheel_serves_the_console_and_the_faq_admin_pages(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    zipfile.ZipFile(wheel).extractall(site)  # a wheel is installed by unpacking it into site-packages
    # The dependencies come from the test's own environment. A path in a .pth file is added as it is: the .pth files
    # inside it (the project's editable install) are not run, so the project itself can only come from the wheel.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'wheel.db'}", MATCHER_EMBEDDINGS="false", LOG_LEVEL="WARNING")
    script = textwrap.dedent(
        f"""
        import re
        import console, knowledge
        assert console.__file__.startswith({str(site)!r}), console.__file__
        assert knowledge.__file__.startswith({str(site)!r}), knowledge.__file__
        from fastapi.testclient import TestClient
        from bot.app import create_app
        from core.database import session_scope
        from ticketing import staff

        with TestClient(create_app()) as client:
            login = client.get("/console/login")
            assert login.status_code == 200 and 'name="password"' in login.text, login.text[:500]
            with session_scope() as db_session:
                staff.create(db_session=db_session, username="admin", password="correct horse battery", role="admin")
            token = client.cookies.get("ma_login_csrf")
            form = {{"username": "admin", "password": "correct horse battery", "csrf_token": token}}
            assert client.post("/console/login", data=form, follow_redirects=False).status_code == 303
            for path in ("/console/queue", "/console/admin/faq", "/console/admin/unanswered", "/console/admin/guides"):
                page = client.get(path)
                assert page.status_code == 200 and "<html" in page.text, (path, page.status_code, page.text[:500])
            assert re.search("开票|发票", client.get("/console/admin/faq").text)
            assert client.get("/console/static/console.css").status_code == 200
            assert "发票助手" in client.get("/chat").text, "the merchants' web chat page"
            assert client.get("/chat/static/chat.js").status_code == 200
        print("served")
        """
    )
    done = subprocess.run(
        [python, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("served"), done.stderr[-3000:]
