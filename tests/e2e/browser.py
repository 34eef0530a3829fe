"""Two users in two browser contexts of Debian's chromium (fake media
devices) drive the reference web app (/app) of a callgate on the real stack.

    browser.py <callgate base url> <screenshot dir> <part>

part: `call` (ring, answer, audio, consent, revoke, hang up, history) or
`mislabel` (video published as a microphone before consent reaches nobody).
Prints one line per step; exits non-zero with the browsers' console on failure.
"""

import os
import sys
import time
import uuid

from playwright.sync_api import expect, sync_playwright

BASE, SHOTS, PART = sys.argv[1], sys.argv[2], sys.argv[3]
CHROMIUM = os.environ.get("CALLGATE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"]
console = []


def step(text):
    print(f"browser: {text}", flush=True)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"))


def receiving(page):
    return page.evaluate("window.callgateApp.receiving()")


def wait_until(what, check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.25)


def sign_in(browser, user_id, name, gender):
    context = browser.new_context(viewport={"width": 1100, "height": 760}, permissions=["camera", "microphone"])
    page = context.new_page()
    page.on("console", lambda m: console.append(f"[{name}] {m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"[{name}] pageerror: {e}"))
    page.goto(f"{BASE}/app")
    form = page.locator("#signin-form")
    form.get_by_label("User id").fill(user_id)
    form.get_by_label("Name").fill(name)
    form.get_by_label("Gender").select_option(gender)
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Call someone")).to_be_visible()
    return page


def connected_call(browser, tag):
    she = sign_in(browser, f"she-{tag}", "Alice", "female")
    he = sign_in(browser, f"he-{tag}", "Bob", "male")
    shot(she, "home")
    she.get_by_label("Whom to call (user id)").fill(f"he-{tag}")
    she.get_by_role("button", name="Call", exact=True).click()
    expect(he.get_by_role("heading", name="Incoming call")).to_be_visible(timeout=10_000)
    expect(he.get_by_text("Alice is calling")).to_be_visible()
    step("she calls him; his page rings")
    shot(he, "incoming")
    he.get_by_role("button", name="Answer").click()
    for page in (she, he):
        expect(page.locator("#call-status")).to_have_text("Connected", timeout=15_000)
    wait_until("both hear each other", lambda: all(receiving(p)["audioPackets"] > 0 for p in (she, he)))
    step("he answers; both are connected and receive audio packets")
    return she, he


def no_video_for(pages, seconds):
    """Asserts no page decodes a new video frame for this long."""
    before = [receiving(p)["videoFrames"] for p in pages]
    time.sleep(seconds)
    after = [receiving(p)["videoFrames"] for p in pages]
    assert after == before, f"video frames still arrived: {before} -> {after}"


def the_call(browser, tag):
    she, he = connected_call(browser, tag)
    # His camera, before any consent: LiveKit has not granted it.
    he.evaluate("window.callgateApp.room().localParticipant.setCameraEnabled(true).catch(() => null)")
    time.sleep(2)
    assert receiving(she)["videoFrames"] == 0, "her page decoded his video before she allowed it"
    step("before consent, his camera reaches nothing of hers")

    he.get_by_role("button", name="Ask for video").click()
    expect(he.get_by_text("Asked — waiting for an answer.")).to_be_visible()
    expect(she.get_by_text("Bob would like to turn on video")).to_be_visible(timeout=10_000)
    assert receiving(she)["videoFrames"] == 0 and receiving(he)["videoFrames"] == 0, "video before her allow"
    shot(she, "consent-prompt")
    shot(he, "consent-asked")
    step("he asks for video; her page shows the prompt; no frames yet")

    she.get_by_role("button", name="Allow").click()
    wait_until("each page decodes the other's video", lambda: all(receiving(p)["videoFrames"] > 0 for p in (she, he)))
    expect(he.get_by_text("Video is on.")).to_be_visible()
    time.sleep(1)
    shot(she, "in-call-video")
    step("she allows; each page decodes the other's video frames")

    she.get_by_role("button", name="Turn video off").click()
    expect(he.get_by_text("Video is off.")).to_be_visible(timeout=5_000)
    time.sleep(2)
    no_video_for([she, he], 2)
    step("she turns video off; within 2 s no video frames arrive on either side")

    he.get_by_role("button", name="Hang up").click()
    expect(she.get_by_role("heading", name="Call ended")).to_be_visible(timeout=10_000)
    expect(he.get_by_role("heading", name="Call ended")).to_be_visible()
    shot(she, "rating")
    step("he hangs up; her page shows the call ended")

    she.get_by_role("button", name="Send rating").click()
    expect(she.get_by_role("heading", name="Call someone")).to_be_visible()
    she.get_by_role("button", name="History").click()
    row = she.locator("#history tbody tr").first
    expect(row).to_contain_text("Bob")
    expect(row).to_contain_text("completed")
    shot(she, "history")
    step("the history page shows the call")


def the_mislabel(browser, tag):
    she, he = connected_call(browser, tag)
    he.evaluate(
        """async () => {
            const { room, Track } = window.callgateApp;
            const stream = await navigator.mediaDevices.getUserMedia({ video: true });
            await room().localParticipant.publishTrack(stream.getVideoTracks()[0], { source: Track.Source.Microphone })
                .catch(() => null);
        }"""
    )
    time.sleep(3)
    assert receiving(she)["videoFrames"] == 0, "her page decoded video published as a microphone"
    expect(she.get_by_role("heading", name="Call ended")).to_be_visible(timeout=10_000)
    step("his video published as a microphone reaches nothing of hers, and the call ends")


def main():
    os.makedirs(SHOTS, exist_ok=True)
    tag = uuid.uuid4().hex[:10]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            {"call": the_call, "mislabel": the_mislabel}[PART](browser, tag)
        except Exception:
            print("---- browser console ----", file=sys.stderr)
            print("\n".join(console[-80:]), file=sys.stderr)
            raise
        finally:
            browser.close()


if __name__ == "__main__":
    main()
