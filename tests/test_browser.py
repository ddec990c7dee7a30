"""The web page in a real browser: headless Debian Chromium driven by Playwright.

Playwright's own browser download cannot work here (no network), so the test uses the system's
`chromium` (`apt-get install -y chromium`; `.ci/run` does this when it runs as root) and skips,
saying so, where it is absent. Every request the page makes outside this server is blocked and
counted: the page must work with no network. The microphone is Chromium's fake device (a beep
every second), its permission prompt answered yes.
"""

import shutil
import socket
import struct
import threading
import time

import pytest
import soundfile as sf
import uvicorn

from sepgan.serve.app import Settings, create_app
from tests.conftest import noisy_speech

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (as root: apt-get install -y chromium; "
                             ".ci/run does this); Playwright's own browser download cannot work without network")
# Without the background-networking flags Chromium's own connections are refused by the closed network.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    port = free_port()
    app = create_app(Settings(checkpoint=tiny_checkpoint, max_seconds=60))
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS)
        yield context
        context.close()


@pytest.fixture
def page(browser, server):
    outside = []

    def only_this_server(route):
        if route.request.url.startswith(server) or route.request.url.startswith(("blob:", "data:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page = browser.new_page()
    page.route("**/*", only_this_server)
    page.api_calls = []  # (method, path and query, body) of every request to /api/
    page.on("request", lambda r: "/api/" in r.url and page.api_calls.append(
        (r.method, r.url.removeprefix(server), r.post_data_buffer)))
    yield page
    page.close()
    assert outside == [], f"the page tried to load from elsewhere: {outside}"


PLAYERS = ["#inputPlayer", "#outputPlayer", "#noisePlayer"]


def durations(page) -> list[float]:
    """Durations of the three players once the browser has read their audio."""
    page.wait_for_function(f"{PLAYERS}.every(s => document.querySelector(s).readyState >= 1)", timeout=20_000)
    return page.evaluate(f"{PLAYERS}.map(s => document.querySelector(s).duration)")


def separations(page) -> list[tuple[str, bytes]]:
    return [(url, body) for method, url, body in page.api_calls if url.startswith("/api/separate")]


def test_upload_add_noise_clean_listen_and_see(page, server, tmp_path):
    sf.write(tmp_path / "talk.wav", noisy_speech(3.0, 22050), 22050, subtype="PCM_16")
    page.goto(server + "/")
    page.wait_for_function("document.querySelector('#model').textContent.includes('tiny')")
    page.set_input_files("#file", str(tmp_path / "talk.wav"))
    assert "talk.wav" in page.text_content("#chosen")
    page.select_option("#noise", "synthetic/siren")
    page.fill("#snr", "0")
    page.fill("#dry", "30")
    assert page.text_content("#dryValue") == "30 %"
    page.click("#run")
    page.wait_for_selector("#spectrogram", state="visible", timeout=60_000)
    assert page.text_content("#status") == "done"
    assert durations(page) == pytest.approx([3.0, 3.0, 3.0], abs=0.01)
    assert page.evaluate("document.querySelector('#spectrogram').naturalWidth") > 200
    assert page.get_attribute("#download", "download") == "talk_clean.wav"
    assert page.get_attribute("#downloadNoise", "download") == "talk_noise.wav"
    assert "siren" in page.text_content("#inputCaption") and "30 %" in page.text_content("#outputCaption")
    # One upload to clean, which brought the speech, the noise and the picture back: the mixture, not
    # the original file, and the dry/wet setting as `dry`.
    ((url, body),) = separations(page)
    assert "dry=0.3" in url
    assert not any("/api/spectrogram" in url for _, url, _ in page.api_calls)
    assert body.count(b"RIFF") == 1 and len(body) > 3 * 22050 * 2
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)


def test_record_from_the_microphone_then_clean(page, server):
    page.goto(server + "/")
    page.wait_for_function("document.querySelector('#model').textContent.includes('tiny')")
    page.click("#record")
    page.wait_for_function("parseFloat(document.querySelector('#recordTime').textContent) >= 1.5", timeout=20_000)
    page.click("#record")
    page.wait_for_function("document.querySelector('#chosen').textContent.includes('recording-')", timeout=20_000)
    assert page.text_content("#status") == "" and ".wav" in page.text_content("#chosen")
    assert "Record" in page.text_content("#record")
    page.click("#run")
    page.wait_for_selector("#spectrogram", state="visible", timeout=60_000)
    assert page.text_content("#status") == "done"
    heard = durations(page)
    assert 1.4 < heard[0] < 5 and heard == pytest.approx([heard[0]] * 3, abs=0.01)
    # What went up is 16-bit mono WAV at the model's rate, written by the page from the recorder's audio.
    ((url, body),) = separations(page)
    wav = body[body.index(b"RIFF"):]
    assert wav[8:16] == b"WAVEfmt " and struct.unpack("<HHI", wav[20:28]) == (1, 1, 16000)
    assert page.get_attribute("#download", "download").startswith("recording-")


def test_server_message_is_shown_for_a_bad_file(page, server, tmp_path):
    (tmp_path / "notes.wav").write_text("a text file renamed to .wav\n" * 20)
    page.goto(server + "/")
    page.wait_for_function("document.querySelector('#model').textContent.includes('tiny')")
    page.set_input_files("#file", str(tmp_path / "notes.wav"))
    page.click("#run")
    page.wait_for_selector("#status.error", timeout=30_000)
    assert "'notes.wav' is not audio" in page.text_content("#status")
    assert page.is_hidden("#results")


def test_api_docs_render_offline(page, server):
    page.goto(server + "/docs")
    page.locator(".opblock-summary-path", has_text="/api/separate").first.wait_for(timeout=30_000)
    assert page.locator(".opblock-summary-path").count() >= 6  # every endpoint is listed
