"""Two users in two browser contexts of Debian's chromium (fake media
devices) drive the reference web app (/app) of a callgate on the real stack.

    browser.py <callgate base url> <screenshot dir> <part>

part: `call` (ring, answer, audio, consent, revoke, recording by consent,
hang up, the recording listed and downloaded, history),
`mislabel` (video published as a microphone before consent reaches nobody),
`screens` (a group call driven by keyboard where a person would: every
screen, the Report form after the call among them, photographed at 1280x720 and 390x844, checked to fit, and audited
with axe-core; the ringtone, the notification of a hidden tab, who speaks,
who is muted, the network, the timer),
or one of the modified-client attacks, where his page is the web app with
livekit-client's internals patched, against her honest web page and (in
groups) a third participant's honest Python client (lkclient.py):
`disguised` (a canvas video published under an audio declaration),
`stale_camera` (the token LiveKit refreshed while video was on, reused to
publish a camera after her revoke), `stale_rejoin` (the last refreshed
token reused after he left, and after he was removed).
Prints one line per step, and `RESULT <json>` lines for the Rust test to
check on the server; exits non-zero with the browsers' console on failure.
"""

import json
import math
import os
import subprocess
import sys
import time
import urllib.request
import uuid
import wave

from playwright.sync_api import expect, sync_playwright

# Assertions that wait for the page get 10 s, not Playwright's 5: two or
# three pages of WebRTC share a two-core box with the rest of the suite.
expect.set_options(timeout=10_000)

BASE, SHOTS, PART = sys.argv[1], sys.argv[2], sys.argv[3]
CHROMIUM = os.environ.get("CALLGATE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"]
console = []
pages = []  # (name, page), for what a failure prints of each


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


# What a page shows and last heard, read with a deadline: a page that
# cannot answer in 5 s is itself the finding (starved or hung).
PAGE_STATE = """() => ({
    screen: [...document.querySelectorAll('section[id^=screen-]')].filter((s) => !s.hidden).map((s) => s.id),
    consent: document.querySelector('#consent')?.innerText ?? null,
    buttons: [...document.querySelectorAll('#consent button, #rec-box button')].map((b) => b.textContent),
    events: window.callgateApp?.events?.() ?? [],
    room: window.callgateApp?.room()?.state ?? null,
})"""


def page_states():
    for name, page in pages:
        if page.is_closed():
            continue
        started = time.monotonic()
        try:
            page.set_default_timeout(5_000)
            state = page.evaluate(PAGE_STATE)
            print(f"browser: {name}'s page ({time.monotonic() - started:.2f} s to answer): {json.dumps(state)[:1500]}", flush=True)
        except Exception as e:
            print(f"browser: {name}'s page did not answer in {time.monotonic() - started:.1f} s: {str(e)[:200]}", flush=True)


def result(**fields):
    print("RESULT " + json.dumps(fields), flush=True)


def api(method, path, token=None, body=None):
    """The API as a client calls it; (status, JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{BASE}{path}", data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def dev_token(user_id, gender):
    status, body = api("POST", "/app/dev-token", body={"userId": user_id, "name": user_id, "gender": gender})
    assert status == 200, f"dev sign-in: {status} {body}"
    return body["token"]


class Lk:
    """An honest Python participant (lkclient.py, `honest` mode), JSON lines."""

    def __init__(self, url, token):
        here = os.path.dirname(os.path.abspath(__file__))
        self.log = open(os.path.join(SHOTS, f"lkclient-{uuid.uuid4().hex[:6]}.log"), "w")
        self.p = subprocess.Popen(
            [sys.executable, os.path.join(here, "lkclient.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1,
        )
        self.n = 0
        self.cmd("connect", url=url, token=token, subscribe="honest")

    def cmd(self, cmd, **args):
        self.n += 1
        self.p.stdin.write(json.dumps({"id": self.n, "cmd": cmd, **args}) + "\n")
        self.p.stdin.flush()
        reply = json.loads(self.p.stdout.readline())
        assert reply.get("ok"), f"lkclient {cmd}: {reply}"
        return reply

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=10)
        except Exception:
            self.p.kill()


def open_app(browser, name, viewport=None, init_script=None):
    context = browser.new_context(viewport=viewport or {"width": 1100, "height": 760}, permissions=["camera", "microphone"])
    if init_script:
        context.add_init_script(path=init_script)
    page = context.new_page()
    pages.append((name, page))
    page.on("console", lambda m: console.append(f"[{name}] {m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"[{name}] pageerror: {e} at {(e.stack or '').splitlines()[1:3]}"))
    page.goto(f"{BASE}/app")
    return page


def sign_in(browser, user_id, name, gender, page=None, **context):
    page = page or open_app(browser, name, **context)
    form = page.locator("#signin-form")
    form.get_by_label("User id").fill(user_id)
    form.get_by_label("Name").fill(name)
    form.get_by_label("Gender").select_option(gender)
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Call someone")).to_be_visible()
    return page


# The ICE servers the page's room was joined with (what callgate handed it).
ICE = """() => (window.callgateApp.room()?.connOptions?.rtcConfig?.iceServers ?? [])
    .map((s) => ({ urls: [].concat(s.urls), credential: Boolean(s.credential) }))"""


def relayed(page):
    """Whether the page joined its room with a TURN server and its credential."""
    return any(s["credential"] and any(u.startswith("turn:") for u in s["urls"]) for s in page.evaluate(ICE))


def calling_without_a_room(page):
    """Her call rings: her page says so and is in no room (callgate hands no relay before an answer)."""
    expect(page.locator("#call-status")).to_contain_text("Calling")
    assert page.evaluate("window.callgateApp.room() === undefined"), "her page joins no room while it rings"


def connected_call(browser, tag, **context):
    she = sign_in(browser, f"she-{tag}", "Alice", "female", **context)
    he = sign_in(browser, f"he-{tag}", "Bob", "male", **context)
    shot(she, "home")
    she.get_by_label("Whom to call (user id)").fill(f"he-{tag}")
    she.get_by_role("button", name="Call", exact=True).click()
    expect(he.get_by_role("heading", name="Incoming call")).to_be_visible(timeout=10_000)
    expect(he.get_by_text("Alice is calling")).to_be_visible()
    calling_without_a_room(she)
    step("she calls him; his page rings; hers says Calling… and is in no room yet")
    shot(he, "incoming")
    he.get_by_role("button", name="Answer").click()
    for page in (she, he):
        expect(page.locator("#call-status")).to_have_text("Connected", timeout=15_000)
    assert relayed(she) and relayed(he), f"both joined with TURN: {she.evaluate(ICE)} {he.evaluate(ICE)}"
    wait_until("both hear each other", lambda: all(receiving(p)["audioPackets"] > 0 for p in (she, he)))
    step("he answers; she joins the room with a fresh token (TURN included); both receive audio packets")
    return she, he


def no_video_for(pages, seconds):
    """Asserts no page decodes a new video frame for this long."""
    before = [receiving(p)["videoFrames"] for p in pages]
    time.sleep(seconds)
    after = [receiving(p)["videoFrames"] for p in pages]
    assert after == before, f"video frames still arrived: {before} -> {after}"


def recording_status(page):
    """The status of the recording callgate is making of the page's call, if any."""
    return page.evaluate(
        """async () => {
            const app = window.callgateApp;
            const view = await app.client().recordingState(app.call().id);
            return view.recording ? view.recording.status : null;
        }"""
    )


def the_call(browser, tag):
    audits = []
    # axe-core too, for the recording's screens (see `capture`).
    she, he = connected_call(browser, tag, init_script=AXE)
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

    she.get_by_role("button", name="Record", exact=True).click()
    expect(she.get_by_text("You asked to record")).to_be_visible()
    he.locator("#rec-box").get_by_role("button", name="Don't allow").click()
    expect(he.get_by_text("You didn't allow it")).to_be_visible(timeout=10_000)
    expect(she.get_by_text("Your request to record was declined.")).to_be_visible(timeout=10_000)
    assert "Bob" not in she.locator("#rec-box").inner_text(), "her page never says who said no"
    expect(she.locator("#rec-indicator")).to_be_empty()
    step("she asks to record, he does not allow it: her page says it was declined, not by whom")

    he.get_by_role("button", name="Record", exact=True).click()
    expect(he.get_by_text("You asked to record")).to_be_visible()
    asked = she.locator("#rec-box")
    expect(asked.get_by_text("Bob would like to record this call")).to_be_visible(timeout=10_000)
    for page in (she, he):
        expect(page.locator("#rec-indicator")).to_be_empty()
    step("he asks to record; her page shows the prompt (Allow, Don't allow); nothing records yet")
    capture(she, "recording-prompt", ".controls button, #rec-box button", audits)

    asked.get_by_role("button", name="Allow", exact=True).click()
    for page in (she, he):
        expect(page.get_by_role("status").filter(has_text="Recording")).to_be_visible(timeout=10_000)
        expect(page.get_by_role("button", name="Stop recording")).to_be_visible()
        expect(page.get_by_role("button", name="Record", exact=True)).to_be_hidden()
    wait_until("egress records", lambda: recording_status(she) == "recording", 30)
    step("she allows; both pages show the recording indicator (a status) and Stop recording; egress records")
    capture(she, "recording-on", ".controls button, #rec-stop, #rec-indicator", audits)
    time.sleep(2)

    she.get_by_role("button", name="Stop recording").click()
    for page in (she, he):
        expect(page.locator("#rec-indicator")).to_be_empty(timeout=10_000)
        expect(page.get_by_role("button", name="Stop recording")).to_be_hidden()
        expect(page.get_by_role("button", name="Record", exact=True)).to_be_visible()
    expect(he.get_by_text("Recording stopped.")).to_be_visible()
    step("she stops it; the indicator goes on both pages")

    he.get_by_role("button", name="Hang up").click()
    expect(she.get_by_role("heading", name="Call ended")).to_be_visible(timeout=10_000)
    expect(he.get_by_role("heading", name="Call ended")).to_be_visible()
    shot(she, "rating")
    step("he hangs up; her page shows the call ended")

    listed = she.locator("#recordings-list li")
    expect(listed).to_have_count(1, timeout=10_000)
    expect(listed.first).to_contain_text("Ready", timeout=60_000)
    expect(listed.first).to_contain_text("Audio recording 1")
    step(f"her ended screen lists the recording, ready: {listed.first.inner_text()!r}")
    capture(she, "recordings", "#rating-form button, #recordings-list button", audits)
    with she.expect_download() as downloading:
        listed.first.get_by_role("button", name="Download").click()
    saved = downloading.value
    with open(saved.path(), "rb") as f:
        head = f.read(4)
        size = 4 + len(f.read())
    assert head == b"OggS", f"the download is an Ogg file: {head!r}"
    assert saved.suggested_filename.endswith(".ogg"), saved.suggested_filename
    expect(she.locator("#recordings-status")).to_have_text("Downloaded.")
    step(f"she downloads it (fetched with her token): {saved.suggested_filename}, {size} bytes, starting OggS")
    listed.first.get_by_role("button", name="Delete").click()
    listed.first.get_by_role("button", name="Yes, delete").click()
    expect(listed.first).to_contain_text("Deleted", timeout=10_000)
    expect(listed.first.get_by_role("button")).to_have_count(0)
    step("she deletes it (asked once more): it stays listed, deleted, with nothing to download")

    she.get_by_text("Report someone from this call").click()
    form = she.locator("#report-form")
    form.get_by_label("Whom to report").select_option(label="Bob")
    form.get_by_label("What happened").select_option("harassment")
    form.get_by_label("Tell us more (optional)").fill("He kept shouting at me.")
    form.get_by_role("button", name="Report", exact=True).click()
    expect(she.get_by_text("your report was sent")).to_be_visible(timeout=5_000)
    filed = she.evaluate(
        """async () => {
            const client = window.callgateApp.client();
            const { calls } = await client.callHistory({ limit: 1 });
            return (await client.callReports(calls[0].id)).reports;
        }"""
    )
    assert [(r["reason"], r["text"]) for r in filed] == [("harassment", "He kept shouting at me.")], filed
    step("she reports him from the ended call; the report is hers to read")

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



# ------------------------------------------------------------ screens
#
# axe-core (web/node_modules, a pinned devDependency of the web app) is
# injected by Playwright before the page's own scripts, whatever the page's
# Content-Security-Policy says; it only reads the page.
AXE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "web", "node_modules", "axe-core", "axe.min.js")
SIZES = [("1280x720", {"width": 1280, "height": 720}), ("390x844", {"width": 390, "height": 844})]
DESKTOP = SIZES[0][1]

AXE_RUN = """async () => {
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 4).map((n) => n.target.join(' ')) }));
}"""

# Whether the focused element shows it (null), or what is wrong.
FOCUS = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return 'nothing is focused';
    const s = getComputedStyle(el);
    const what = `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} "${(el.textContent || el.value || '').trim().slice(0, 30)}"`;
    if (!el.matches(':focus-visible')) return `${what} is focused without :focus-visible`;
    if (s.outlineStyle === 'none' || parseFloat(s.outlineWidth) < 2) return `${what} shows no outline`;
    return null;
}"""

# What does not fit: a page wider than the screen, or one of these
# (visible) elements outside the viewport or scrolled away.
FITS = """(selector) => {
    const out = [];
    const root = document.scrollingElement;
    if (root.scrollWidth > innerWidth + 1) out.push(`the page is ${root.scrollWidth}px wide`);
    const main = document.querySelector('main');
    if (main.scrollWidth > main.clientWidth + 1) out.push(`its content is ${main.scrollWidth}px wide`);
    for (const el of document.querySelectorAll(selector)) {
        const r = el.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;
        if (r.top < 0 || r.left < 0 || r.bottom > innerHeight + 0.5 || r.right > innerWidth + 0.5) {
            const name = el.id || el.textContent.trim().slice(0, 20);
            out.push(`${name} at (${Math.round(r.left)}, ${Math.round(r.top)})-(${Math.round(r.right)}, ${Math.round(r.bottom)})`);
        }
    }
    return out;
}"""

HIDE = """(hidden) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => hidden ? 'hidden' : 'visible' });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
    document.dispatchEvent(new Event('visibilitychange'));
}"""


def notifications(page, setting):
    """Sets what this page's browser says of notifications: `prompt` (not asked
    yet: headless Chromium would say denied), `granted`, `denied`."""
    target = page.context.new_cdp_session(page).send("Target.getTargetInfo")["targetInfo"]
    page.context.browser.new_browser_cdp_session().send("Browser.setPermission", {
        "permission": {"name": "notifications"}, "setting": setting, "origin": BASE,
        "browserContextId": target["browserContextId"],
    })


def focus_shown(page):
    problem = page.evaluate(FOCUS)
    assert problem is None, problem


def tab_to(page, selector, back=False, limit=30):
    """Presses Tab (or Shift+Tab) until `selector` has the focus; every stop must show it."""
    key = "Shift+Tab" if back else "Tab"
    for _ in range(limit):
        page.keyboard.press(key)
        focus_shown(page)
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is not reached with {key}")


def capture(page, screen, must_see, audits, ready=None):
    """At each size: the screen fits, is photographed (once `ready` holds, if
    given), and axe finds nothing serious or critical."""
    for size, viewport in SIZES:
        page.set_viewport_size(viewport)
        time.sleep(0.5)
        if ready:
            wait_until(f"{screen} is ready to be photographed", ready, 20)
        out = page.evaluate(FITS, must_see)
        assert not out, f"{screen} at {size}: out of view: {out}"
        shot(page, f"{screen}-{size}")
        violations = page.evaluate(AXE_RUN)
        bad = [v for v in violations if v["impact"] in ("serious", "critical")]
        listed = ", ".join(f"{v['id']} ({v['impact']})" for v in violations) or "none"
        step(f"{screen} at {size}: fits; axe violations: {listed}")
        audits.append({"screen": screen, "size": size, "violations": [[v["id"], v["impact"]] for v in violations]})
        assert not bad, f"{screen} at {size}: axe finds {json.dumps(bad, indent=1)}"
    page.set_viewport_size(DESKTOP)


def tile(page, user_id):
    return page.locator(f'#people li[data-id="{user_id}"]')


def the_screens(browser, tag):
    audits = []
    app = {"viewport": DESKTOP, "init_script": AXE}
    she = open_app(browser, "Alice", **app)
    notifications(she, "prompt")
    expect(she.get_by_role("heading", name="Sign in (development)")).to_be_visible()
    capture(she, "sign-in", "#signin-form button", audits)

    tab_to(she, "input[name=userId]")
    she.keyboard.type(f"she-{tag}")
    tab_to(she, "input[name=name]")
    she.keyboard.type("Alice")
    tab_to(she, "#signin-form button[type=submit]")
    she.keyboard.press("Enter")
    expect(she.get_by_role("heading", name="Call someone")).to_be_visible()
    step("she signs in with the keyboard alone; every stop shows its focus")
    expect(she.get_by_role("button", name="Turn on call notifications")).to_be_visible()
    capture(she, "home", "#call-form button, #notify-on", audits)

    he = open_app(browser, "Bob", **app)
    notifications(he, "prompt")
    sign_in(browser, f"he-{tag}", "Bob", "male", page=he)
    carol = sign_in(browser, f"carol-{tag}", "Carol", "female", **app)
    # He will say yes when the browser asks.
    notifications(he, "granted")
    tab_to(he, "#notify-on")
    he.keyboard.press("Enter")
    expect(he.get_by_text("Call notifications are on")).to_be_visible()
    he.evaluate(HIDE, True)
    step("he turns call notifications on (the browser grants them) and his tab goes to the background")

    tab_to(she, "input[name=callee]")
    she.keyboard.type(f"he-{tag}, carol-{tag}")
    tab_to(she, "#call-form button[type=submit]")
    she.keyboard.press("Enter")
    expect(he.get_by_role("heading", name="Incoming call")).to_be_visible(timeout=10_000)
    expect(he.get_by_text("Alice is calling")).to_be_visible()
    expect(he.get_by_text("With Carol")).to_be_visible()
    rings = wait_until("his ringtone sounds", lambda: (lambda r: r if r["playing"] and r["level"] > 0.001 else None)(
        he.evaluate("window.callgateApp.ringtone()")), 10)
    notification = he.evaluate("window.callgateApp.notification()")
    assert notification and notification["title"] == "Alice is calling", f"his hidden tab shows a notification: {notification}"
    assert he.title().startswith("Alice is calling"), he.title()
    step(f"she calls him and Carol with the keyboard; his page rings ({rings}) and notifies: {notification}")
    calling_without_a_room(she)
    capture(she, "calling", "#hang-up", audits)
    he.evaluate(HIDE, False)
    tab_to(he, "#answer")
    capture(he, "incoming", "#answer, #decline", audits)

    he.keyboard.press("Enter")
    carol.get_by_role("button", name="Answer").click()
    for page in (she, he, carol):
        expect(page.locator("#call-status")).to_have_text("Connected", timeout=15_000)
    assert relayed(she), f"answered, she joined with TURN: {she.evaluate(ICE)}"
    after = he.evaluate("[window.callgateApp.ringtone().playing, window.callgateApp.notification()]")
    assert after == [False, None], f"answered, nothing rings and the notification is gone: {after}"
    step("he answers with the keyboard (his ringtone and notification stop), Carol with a click")

    # What a person sees (innerText: what is displayed).
    expect(tile(she, f"he-{tag}")).to_contain_text("Bob", use_inner_text=True, timeout=10_000)
    expect(tile(she, f"carol-{tag}")).to_contain_text("Carol", use_inner_text=True, timeout=10_000)
    expect(tile(she, f"he-{tag}")).not_to_contain_text("Muted", use_inner_text=True)
    he.get_by_role("button", name="Mute").click()
    expect(tile(she, f"he-{tag}")).to_contain_text("Muted", use_inner_text=True, timeout=10_000)
    expect(he.locator("#self")).to_contain_text("Muted", use_inner_text=True)
    speaks = lambda: she.locator("#people li[data-speaking]").count() > 0  # noqa: E731
    # LiveKit reports speakers from audio levels; late on a loaded box.
    wait_until("her page shows someone speaking", speaks, 45)
    # LiveKit tells a page someone's network when they enter or it changes,
    # and only for those the page already subscribes to: a participant the
    # page subscribed to after that tick stays "unknown" until it changes
    # (steady on loopback). So: her own network is always shown, and each
    # tile shows exactly what livekit-client heard of that person.
    told = """() => {
        const room = window.callgateApp.room();
        return [...document.querySelectorAll('#people li')].map((li) => [
            li.dataset.quality ?? 'unknown',
            room?.getParticipantByIdentity(li.dataset.id)?.connectionQuality ?? 'unknown',
        ]);
    }"""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(shown != "unknown" for shown, _ in she.evaluate(told)):
            break
        time.sleep(0.25)
    wait_until(
        "her page shows her own network",
        lambda: she.locator('#self[data-quality]:not([data-quality="unknown"])').count() == 1,
        10,
    )
    wait_until(
        "each tile shows the network LiveKit told her page",
        lambda: all(shown == heard for shown, heard in she.evaluate(told)) and len(she.evaluate(told)) == 2,
        10,
    )
    first = she.locator("#call-timer").inner_text()
    time.sleep(2.1)
    later = she.locator("#call-timer").inner_text()
    assert first != later and later.count(":") == 1, f"the timer counts: {first} then {later}"
    speaking = she.locator("#people li[data-speaking] .name").all_inner_texts()
    assert "Bob" not in speaking, f"muted, he is not speaking: {speaking}"
    networks = she.locator("#people li").evaluate_all("(els) => els.map((e) => e.dataset.quality)")
    step(f"her page: Bob muted, speaking {speaking}, networks {networks}, timer {first} then {later}")
    capture(she, "in-call-audio", ".controls button", audits, ready=speaks)

    he.get_by_role("button", name="Ask for video").click()
    expect(carol.get_by_text("Bob would like to turn on video")).to_be_visible(timeout=10_000)
    carol.get_by_role("button", name="Allow").click()
    expect(she.get_by_text("Bob would like to turn on video")).to_be_visible(timeout=10_000)
    capture(she, "consent-prompt", ".controls button, #consent button", audits)
    assert she.evaluate("document.activeElement.textContent") == "Allow", "the prompt takes her focus"
    focus_shown(she)
    she.keyboard.press("Enter")
    wait_until("each page decodes video", lambda: all(receiving(p)["videoFrames"] > 0 for p in (she, he, carol)), 20)
    wait_until("her page shows both cameras", lambda: she.locator("#people li[data-video]").count() == 2, 10)
    time.sleep(1.5)
    step("he asks for video, Carol allows with a click, she with the keyboard; every page decodes video")
    capture(she, "in-call-video", ".controls button", audits)

    tab_to(she, "#hang-up")
    she.keyboard.press("Enter")
    expect(she.get_by_role("heading", name="Call ended")).to_be_visible(timeout=10_000)
    expect(she.get_by_text("You left the call.")).to_be_visible()
    for page in (he, carol):
        expect(page.locator("#call-status")).to_have_text("Connected")
    step("she hangs up with the keyboard: she leaves, the call goes on between him and Carol")
    capture(she, "ended", "#rating-form button, #report summary", audits)

    tab_to(she, "#report summary")
    she.keyboard.press("Enter")
    form = she.locator("#report-form")
    expect(form).to_be_visible()
    expect(form.get_by_label("Whom to report")).to_contain_text("Bob")
    expect(form.get_by_label("Whom to report")).to_contain_text("Carol")
    tab_to(she, "#report-reason")
    step("she opens the Report form with the keyboard: whom (Bob or Carol), what happened, a text")
    submit = form.get_by_role("button", name="Report", exact=True)
    capture(she, "report", "#report-form button, #report-form select", audits,
            ready=lambda: submit.scroll_into_view_if_needed() or True)

    tab_to(she, "input[name=score]", back=True)
    she.keyboard.press("ArrowLeft")
    tab_to(she, "#rating-form button[type=submit]")
    she.keyboard.press("Enter")
    expect(she.get_by_role("heading", name="Call someone")).to_be_visible()
    expect(she.get_by_text("your rating is sent when the call ends")).to_be_visible()
    he.get_by_role("button", name="Hang up").click()
    expect(carol.get_by_role("heading", name="Call ended")).to_be_visible(timeout=10_000)
    expect(she.get_by_text("Thanks for the rating")).to_be_visible(timeout=10_000)
    tab_to(she, "#nav-history", back=True)
    she.keyboard.press("Enter")
    row = she.locator("#history tbody tr").first
    expect(row).to_contain_text("Bob")
    expect(row).to_contain_text("Carol")
    expect(row).to_contain_text("completed", timeout=10_000)
    step("she rates the call (4) with the keyboard: it is sent once he hangs up and the call ends; she opens her history")
    capture(she, "history", "#history th", audits)

    errors = [line for line in console if "pageerror" in line]
    assert not errors, f"no page throws: {errors}"
    result(audits=audits, call=she.evaluate("document.querySelector('#history tbody tr').dataset.callId"))

# ------------------------------------------------------------ attacks
#
# His page is the reference web app; what follows patches livekit-client in
# it as a modified client would. LK_URL is what the app dials.
LK_URL = os.environ.get("LIVEKIT_URL", "ws://127.0.0.1:7880")

# The grants of the token LiveKit last refreshed for his connection (the
# engine keeps it to reconnect with).
SAVED_GRANTS = """() => {
    const token = window.callgateApp.room()?.engine?.token;
    if (!token) return null;
    const body = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return { token, video: JSON.parse(atob(body)).video };
}"""

# A canvas video track published as a microphone, and declared as audio in
# the AddTrackRequest (the client's own permission check passes).
DISGUISED_PUBLISH = """async () => {
    const { room, Track } = window.callgateApp;
    const r = room();
    const signal = r.engine.client;
    const send = signal.sendAddTrack.bind(signal);
    signal.sendAddTrack = (req) => { req.type = 0; /* TrackType.AUDIO */ return send(req); };
    const canvas = document.createElement('canvas');
    canvas.width = 320; canvas.height = 240;
    const ctx = canvas.getContext('2d');
    let n = 0;
    window.__paint = setInterval(() => { ctx.fillStyle = `hsl(${(n++ * 37) % 360} 90% 50%)`; ctx.fillRect(0, 0, 320, 240); }, 33);
    const track = canvas.captureStream(15).getVideoTracks()[0];
    try {
        await r.localParticipant.publishTrack(track, { source: Track.Source.Microphone, simulcast: false });
        return 'published';
    } catch (e) {
        return 'refused: ' + e;
    }
}"""

# A second connection with a saved token (same identity: LiveKit drops his
# first without a leave); optionally publishes his camera at once. Watches
# for `ms`: what it subscribed to, what it decoded, and when it was put out.
STALE_CONNECT = """async ([url, token, ms, camera]) => {
    const { Room, RoomEvent } = window.callgateApp;
    const room = new Room({ adaptiveStream: false, dynacast: false });
    window.__stale = room;
    const out = { connected: false, subscribed: [], audioPackets: 0, videoFrames: 0, outAfterMs: null, camera: null };
    const tracks = [];
    let connectedAt = 0;
    const gone = new Promise((resolve) => room.on(RoomEvent.Disconnected, (reason) => {
        out.outAfterMs = connectedAt ? performance.now() - connectedAt : null;
        out.reason = reason;
        resolve();
    }));
    room.on(RoomEvent.TrackSubscribed, (track, pub, p) => { out.subscribed.push(`${p.identity}:${pub.source}`); tracks.push(track); });
    const sample = async () => {
        for (const t of tracks) {
            if (!t.receiver) continue;
            (await t.receiver.getStats()).forEach((s) => {
                if (s.type !== 'inbound-rtp') return;
                if (s.kind === 'audio') out.audioPackets = Math.max(out.audioPackets, s.packetsReceived ?? 0);
                if (s.kind === 'video') out.videoFrames = Math.max(out.videoFrames, s.framesDecoded ?? 0);
            });
        }
    };
    try {
        await room.connect(url, token);
        connectedAt = performance.now();
        out.connected = true;
    } catch (e) {
        out.error = String(e);
        return out;
    }
    if (camera) {
        room.localParticipant.setCameraEnabled(true).then(() => out.camera = 'published', (e) => out.camera = 'refused: ' + e);
    }
    const until = performance.now() + ms;
    while (performance.now() < until && out.outAfterMs === null) {
        await Promise.race([gone, new Promise((r) => setTimeout(r, 100))]);
        await sample().catch(() => null);
    }
    await sample().catch(() => null);
    return out;
}"""


def saved_token(page, with_camera, timeout=15.0):
    """The token LiveKit refreshed for his connection, once it carries (or not) the camera right."""
    def check():
        grants = page.evaluate(SAVED_GRANTS)
        if not grants:
            return None
        has = "camera" in [s.lower() for s in grants["video"].get("canPublishSources", [])]
        return grants["token"] if has == with_camera else None
    return wait_until(f"LiveKit refreshed his token (camera: {with_camera})", check, timeout)


def video_frames(page):
    return receiving(page)["videoFrames"]


def the_disguised(browser, tag):
    she, he = connected_call(browser, tag)
    call = she.evaluate("window.callgateApp.call().id")
    before = video_frames(she)
    outcome = he.evaluate(DISGUISED_PUBLISH)
    step(f"he publishes a canvas video declared as an audio microphone: {outcome}")
    assert outcome == "published", f"LiveKit takes it (it checks the declaration only): {outcome}"
    expect(she.get_by_role("heading", name="Call ended")).to_be_visible(timeout=15_000)
    assert video_frames(she) == before == 0, "her page decoded his disguised video"
    step("her page decodes no frame of it, and the call ends (he is put out)")
    result(call=call, him=f"he-{tag}")


def the_stale_camera(browser, tag):
    she, he = connected_call(browser, tag)
    call = she.evaluate("window.callgateApp.call().id")
    he.get_by_role("button", name="Ask for video").click()
    expect(she.get_by_text("Bob would like to turn on video")).to_be_visible(timeout=10_000)
    she.get_by_role("button", name="Allow").click()
    wait_until("her page decodes his video", lambda: video_frames(she) > 0)
    token = saved_token(he, with_camera=True)
    step("video is on; LiveKit refreshed his token with the camera right, and he saved it")

    she.get_by_role("button", name="Turn video off").click()
    expect(he.get_by_text("Video is off.")).to_be_visible(timeout=5_000)
    time.sleep(1.5)
    frozen = video_frames(she)
    no_video_for([she], 1)
    step("she turns video off")

    # His publish races callgate's withdrawal of the camera right on his
    # join: LiveKit takes the camera when he wins, refuses it when callgate
    # does. Either way nothing of it may play on her page.
    rounds = []
    for attempt in range(1, 5):
        seen = he.evaluate(STALE_CONNECT, [LK_URL, token, 4000, True])
        rounds.append(seen)
        step(f"attempt {attempt}: his saved token connects again and publishes his camera: {seen}")
        assert seen["connected"], f"LiveKit took the saved token: {seen}"
        assert video_frames(she) == frozen, f"her page decoded his camera after her revoke (attempt {attempt})"
        if seen["outAfterMs"] is not None:
            break
    taken = sum(1 for r in rounds if r["camera"] == "published")
    step(f"nothing of his camera played on her page; LiveKit took it {taken} of {len(rounds)} times")
    result(call=call, him=f"he-{tag}", rounds=rounds, taken=taken)


def group_call(browser, tag):
    """She (web page) calls him (his page, the attacker) and W2 (an honest Python client); all hear each other."""
    she = sign_in(browser, f"she-{tag}", "Alice", "female")
    he = sign_in(browser, f"he-{tag}", "Bob", "male")
    w2_id = f"w2-{tag}"
    w2_token = dev_token(w2_id, "female")
    she.get_by_label("Whom to call (user id)").fill(f"he-{tag}, {w2_id}")
    she.get_by_role("button", name="Call", exact=True).click()
    expect(he.get_by_role("heading", name="Incoming call")).to_be_visible(timeout=10_000)
    # Her page learns the call from startCall's answer, which may come
    # after his page rings: wait for it rather than read it at once.
    call = wait_until("her page knows the call she placed", lambda: she.evaluate("window.callgateApp.call()?.id"), 10)
    he.get_by_role("button", name="Answer").click()
    status, accepted = api("POST", f"/api/v1/calls/{call}/accept", w2_token, {})
    assert status == 200, f"W2 answers: {status} {accepted}"
    w2 = Lk(accepted["join"]["url"], accepted["join"]["token"])
    w2.cmd("publish_audio")
    wait_until("his page hears both", lambda: receiving(he)["audioPackets"] > 0, 20)
    w2.cmd("wait_for", event="track_subscribed", where={"identity": f"he-{tag}"}, timeout=20)
    step("she calls him and W2 (an honest Python client); everyone hears everyone")
    return she, he, w2, call


# How long a connection made with a stale token may stay in the room.
STALE_OUT_BOUND_MS = 3000


def reuse_after(he, token, who):
    seen = he.evaluate(STALE_CONNECT, [LK_URL, token, 8000, False])
    step(f"{who}: his saved token connects again: {seen}")
    assert not seen["subscribed"], f"he subscribed to something: {seen}"
    assert seen["audioPackets"] == 0 and seen["videoFrames"] == 0, f"he received media: {seen}"
    # Put out once connected, or already while his connection was being set
    # up (LiveKit took the token; callgate removed him before media flowed).
    assert seen["outAfterMs"] is not None or not seen["connected"], f"he is put out of the room: {seen}"
    # The bench measures this window at tens of milliseconds (docs/consent.md);
    # the bound here leaves room for a loaded box, not for a missed removal.
    assert seen["outAfterMs"] is None or seen["outAfterMs"] < STALE_OUT_BOUND_MS, f"out within {STALE_OUT_BOUND_MS} ms: {seen}"
    return seen


def still_on(she, call):
    state = she.evaluate("async (id) => (await window.callgateApp.client().getCall(id)).state", call)
    assert state == "active", f"the call goes on between her and W2: {state}"


def the_stale_rejoin(browser, tag):
    she, he, w2, call = group_call(browser, tag)
    try:
        token = saved_token(he, with_camera=False)
        he.evaluate("async (id) => { await window.callgateApp.client().leaveCall(id); }", call)
        step("he leaves the call; it goes on between her and W2")
        time.sleep(1)
        left = reuse_after(he, token, "after leaving")
        still_on(she, call)
        step("back with the last refreshed token, he plays nothing of hers or W2's and is put out")
    finally:
        w2.close()
    she.context.close()
    he.context.close()

    she, he, w2, removed_call = group_call(browser, tag + "r")
    try:
        token = saved_token(he, with_camera=False)
        outcome = he.evaluate(DISGUISED_PUBLISH)
        if outcome != "published" and he.evaluate("window.callgateApp.room() !== undefined"):
            # On a starved box livekit-client can give up its own negotiation
            # (then waits for a restart that never comes); a modified client
            # reconnects and simply tries again.
            step(f"his first publish failed in the browser ({outcome}); he tries again")
            wait_until("his page is connected again", lambda: he.evaluate("window.callgateApp.room()?.state") == "connected", 20)
            outcome = he.evaluate(DISGUISED_PUBLISH)
        assert outcome == "published", outcome
        wait_until("he is put out of the call", lambda: he.evaluate("window.callgateApp.room() === undefined"), 20)
        seen_by_w2 = w2.cmd("video_frames_from", identity=f"he-{tag}r")
        assert seen_by_w2["frames"] == 0, f"W2's honest client decoded his disguised video: {seen_by_w2}"
        step(f"in another call he publishes a disguised track and is put out; W2's honest client decoded none of it ({seen_by_w2})")
        removed = reuse_after(he, token, "after his removal")
        still_on(she, removed_call)
        step("back with the last refreshed token, he plays nothing of hers or W2's and is put out")
    finally:
        w2.close()
    result(left_call=call, removed_call=removed_call, left=left, removed=removed)


def voice(path):
    """Two seconds of a voice-like sound (a 180 Hz buzz with harmonics, four
    syllables a second), looped by chromium as its fake microphone: its own
    fake microphone beeps too briefly for LiveKit to call anyone a speaker."""
    rate = 48000
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = bytearray()
        for n in range(2 * rate):
            t = n / rate
            syllable = 0.55 + 0.45 * math.sin(2 * math.pi * 4 * t)
            buzz = sum(math.sin(2 * math.pi * 180 * k * t) / k for k in (1, 2, 3, 4))
            frames += int(9000 * syllable * buzz / 2).to_bytes(2, "little", signed=True)
        w.writeframes(bytes(frames))
    return path


def main():
    os.makedirs(SHOTS, exist_ok=True)
    tag = uuid.uuid4().hex[:10]
    args = ARGS
    if PART == "screens":
        args = ARGS + [f"--use-file-for-fake-audio-capture={voice(os.path.join(SHOTS, 'voice.wav'))}"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            parts = {
                "call": the_call,
                "mislabel": the_mislabel,
                "screens": the_screens,
                "disguised": the_disguised,
                "stale_camera": the_stale_camera,
                "stale_rejoin": the_stale_rejoin,
            }
            parts[PART](browser, tag)
            for line in console:
                if "pageerror" in line:
                    step(line)
        except Exception as failure:
            # The cause first (a CI excerpt keeps the head), then the last of
            # the browsers' console, each line cut short (signal URLs are long).
            print(f"browser: FAILED: {type(failure).__name__}: {str(failure)[:2000]}", flush=True)
            page_states()
            print("---- browser console (last 60 lines) ----", file=sys.stderr)
            print("\n".join(line[:300] for line in console[-60:]), file=sys.stderr)
            raise
        finally:
            browser.close()


if __name__ == "__main__":
    main()
