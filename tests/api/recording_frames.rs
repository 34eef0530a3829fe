//! What a video call's recording shows, frame by frame, on the real stack:
//! real WebRTC clients publishing solid colours, the LiveKit Egress room
//! composite that `deploy/local.sh up` runs writing an MP4, and ffmpeg
//! decoding it back. A camera of his while video is off (every way a
//! client, honest or modified, has to show one) appears in no frame of the
//! file; the camera he publishes once she has consented to video does.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;

use crate::consent::{call_in_room, camera_right, camera_tracks, revoke, turn_video_on, video};
use crate::helpers::{eventually, spawn_app};
use crate::recording::{download, first_recording_is};

/// What he shows while video is off: nothing else in the room is this colour.
const MAGENTA: [u8; 3] = [255, 0, 255];
/// What he shows once video is on.
const GREEN: [u8; 3] = [0, 255, 0];
/// Frames decoded per second of the file, each scaled down to this size.
const FPS: u32 = 5;
const WIDTH: usize = 64;
const HEIGHT: usize = 36;
/// A pixel is of a colour when its channels are this close to it in sum
/// (H.264's 4:2:0 and the scaling blur edges, not the middle of a tile).
const NEAR: u32 = 120;
/// A frame shows a colour when this many of its pixels are of it: a region
/// of 4x2 pixels here is 30x30 in a 720p frame, a tenth of a 320x240 camera
/// shown at its size.
const REGION: usize = 8;
/// How far the file's own start time (egress's) may be off the frames'.
const SLACK: chrono::Duration = chrono::Duration::seconds(1);

/// One decoded frame: seconds into the file, and its pixels (RGB).
struct Frame {
    at: f64,
    rgb: Vec<u8>,
}

impl Frame {
    /// How many of its pixels are of `colour`.
    fn pixels_of(&self, colour: [u8; 3]) -> usize {
        self.rgb
            .chunks_exact(3)
            .filter(|p| p.iter().zip(colour).map(|(a, b)| u32::from(a.abs_diff(b))).sum::<u32>() < NEAR)
            .count()
    }

    fn shows(&self, colour: [u8; 3]) -> bool {
        self.pixels_of(colour) >= REGION
    }
}

/// The video of `path`, decoded by ffmpeg at [`FPS`] frames a second, with
/// each frame's time in the file (ffmpeg's `showinfo`).
fn decode(path: &Path) -> Vec<Frame> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "info", "-i"])
        .arg(path)
        .args(["-an", "-vf", &format!("fps={FPS},scale={WIDTH}:{HEIGHT},showinfo")])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg decodes {}: {log}", path.display());
    let times: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("Parsed_showinfo"))
        .filter_map(|l| l.split("pts_time:").nth(1))
        .filter_map(|rest| rest.split_whitespace().next().and_then(|t| t.parse().ok()))
        .collect();
    let size = WIDTH * HEIGHT * 3;
    assert_eq!(out.stdout.len() % size, 0, "whole {WIDTH}x{HEIGHT} frames");
    assert_eq!(out.stdout.len() / size, times.len(), "a time for every frame: {log}");
    out.stdout.chunks_exact(size).zip(times).map(|(rgb, at)| Frame { at, rgb: rgb.to_vec() }).collect()
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

#[tokio::test]
async fn a_camera_before_video_consent_is_in_no_frame_of_the_recording() {
    let _media = crate::helpers::media_turn().await;
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    // A video call he answers without video: it is recorded as an MP4 of
    // the cameras' grid, and video is off.
    let (call, _a, mut b) = call_in_room(&app, &alice, &bob, "video", json!(false)).await;
    let room = app.room_name(&call);
    assert_eq!(video(&app, &call, &alice).await["state"], "off");

    // Both consent to recording; egress records and its file grows.
    let (status, asked) =
        app.post(&format!("/api/v1/calls/{call}/recording/requests"), &alice, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{asked}");
    let request = asked["request"]["id"].as_str().expect("a request id").to_owned();
    let path = format!("/api/v1/calls/{call}/recording/requests/{request}/accept");
    let (status, on) = app.post(&path, &bob, json!({})).await;
    assert_eq!((status, on["state"].as_str()), (StatusCode::OK, Some("on")), "{on}");
    let recording = first_recording_is(&app, &call, &bob, "recording", Duration::from_secs(60)).await;
    let id = recording["id"].as_str().expect("an id").to_owned();
    let file = crate::egress::output_dir().join(&call).join(format!("{id}.mp4"));
    // (Its writes come in blocks: a dark page without video compresses to
    // little, and the file grows a block every few seconds.)
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = || std::fs::metadata(&file).map_or(0, |m| m.len());
    let written = held();
    while held() <= written.max(4096) {
        assert!(Instant::now() < deadline, "egress's {} is not growing", file.display());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // While video is off he tries every way he has to show magenta: a
    // camera and a screen share (as an honest client would), video labelled
    // as a source the template draws (`unknown`) or as screen-share audio.
    // LiveKit refuses them all: the rights say microphone only.
    let mut tries = Vec::new();
    for source in ["camera", "screen_share", "unknown", "screen_share_audio"] {
        let at = Utc::now();
        let refused = b.publish_colour(source, MAGENTA, true).await.expect("his client is alive");
        assert!(refused.is_err(), "LiveKit took his magenta {source} while video is off: {refused:?}");
        tries.push((source, at, Utc::now()));
    }
    assert_eq!(camera_tracks(&room).await, 0);
    let refused_until = Utc::now();

    // He asks for video, she consents; he shows green.
    turn_video_on(&app, &call, &bob, &alice).await;
    let consented = Utc::now();
    eventually(Duration::from_secs(10), "LiveKit gives him the camera right", || {
        let (room, bob) = (room.clone(), bob.id.clone());
        async move { camera_right(&room, &bob).await == Some(true) }
    })
    .await;
    let green_at = Utc::now();
    let green = b.publish_colour("camera", GREEN, false).await.expect("his client is alive");
    assert!(green.is_ok(), "LiveKit takes his camera once video is on: {green:?}");
    tokio::time::sleep(Duration::from_secs(6)).await;

    // She revokes: his camera is gone. Then he shows magenta as a video
    // labelled microphone, which LiveKit takes (it checks labels only) and
    // callgate answers by putting him out: the 1:1 call ends, and with it
    // the recording.
    let (status, off) = revoke(&app, &call, &alice).await;
    assert_eq!((status, off["state"].as_str()), (StatusCode::OK, Some("off")), "{off}");
    let revoked = Utc::now();
    eventually(Duration::from_secs(10), "his camera is gone and so is his right", || {
        let (room, bob) = (room.clone(), bob.id.clone());
        async move { camera_tracks(&room).await == 0 && camera_right(&room, &bob).await == Some(false) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at = Utc::now();
    let taken = b.publish_colour("microphone", MAGENTA, false).await.expect("his client is alive");
    tries.push(("video labelled microphone", at, Utc::now()));
    assert!(taken.is_ok(), "LiveKit takes video labelled microphone: {taken:?}");
    let ended = app.wait_for_call(&call, &alice, Duration::from_secs(10), |c| c["state"] == "ended").await;
    assert_eq!(ended["endReason"], "violation", "{ended}");

    let ready = first_recording_is(&app, &call, &alice, "ready", Duration::from_secs(60)).await;
    let started: DateTime<Utc> = serde_json::from_value(ready["startedAt"].clone()).expect("a start time");
    let (status, kind, bytes) = download(&app, &id, &alice).await;
    assert_eq!((status, kind.as_deref()), (StatusCode::OK, Some("video/mp4")));
    let fetched = std::env::temp_dir().join(format!("callgate-frames-{id}.mp4"));
    std::fs::write(&fetched, &bytes).expect("written");
    let (streams, length) = crate::egress::probe(&fetched).expect("ffprobe reads the file");
    let frames = {
        let fetched = fetched.clone();
        tokio::task::spawn_blocking(move || decode(&fetched)).await.expect("decoded")
    };
    let _ = std::fs::remove_file(&fetched);
    let _ = std::fs::remove_file(&file);
    assert!(streams.contains(&("video".to_owned(), "h264".to_owned())), "{streams:?}");
    let wall = |frame: &Frame| started + chrono::Duration::milliseconds((frame.at * 1000.0) as i64);
    let (first, last) = (frames.first().expect("frames"), frames.last().expect("frames"));
    let figures = format!(
        "{} frames decoded at {FPS} fps from {length:.2} s of {streams:?}, {:.2} s to {:.2} s into the file \
         (the file began {:.2} s before his first try; his tries at {:?} s; consent at {:.2} s; \
         green at {:.2} s; revoke at {:.2} s)",
        frames.len(),
        first.at,
        last.at,
        seconds(tries[0].1 - started),
        tries.iter().map(|(what, at, _)| (*what, seconds(*at - started))).collect::<Vec<_>>(),
        seconds(consented - started),
        seconds(green_at - started),
        seconds(revoked - started),
    );
    println!("recording frames: {figures}");
    // The file covers his tries: recorded from before the first to after
    // the camera attempts (the last, which ends the call, may be cut short).
    assert!(wall(first) <= tries[0].1 + SLACK, "the file starts after his first try: {figures}");
    assert!(wall(last) >= refused_until, "the file ends before his last refused try: {figures}");

    // (a) No frame anywhere shows magenta.
    let magenta: Vec<(f64, usize)> =
        frames.iter().filter(|f| f.shows(MAGENTA)).map(|f| (f.at, f.pixels_of(MAGENTA))).collect();
    assert!(
        magenta.is_empty(),
        "magenta in {} frames (seconds into the file, pixels of {}): {magenta:?}; {figures}",
        magenta.len(),
        WIDTH * HEIGHT
    );
    // (b) His green camera is there once she consented, never before.
    let greens: Vec<&Frame> = frames.iter().filter(|f| f.shows(GREEN)).collect();
    let first_green = greens.first().map(|f| wall(f));
    assert!(
        first_green.is_some_and(|t| t + SLACK >= green_at && t <= revoked + SLACK),
        "no green frame between his camera ({:.2} s) and her revoke ({:.2} s): first green at {:?}; {figures}",
        seconds(green_at - started),
        seconds(revoked - started),
        first_green.map(|t| seconds(t - started)),
    );
    // (Egress draws what its page shows a moment later.)
    let late: Vec<f64> = greens.iter().filter(|f| wall(f) > revoked + SLACK * 3).map(|f| f.at).collect();
    assert!(late.is_empty(), "green after the revoke, at {late:?} s into the file; {figures}");
    let before_consent = frames.iter().filter(|f| wall(f) < consented).count();
    let most = greens.iter().map(|f| f.pixels_of(GREEN)).max().unwrap_or(0);
    println!(
        "recording frames: no magenta in any frame ({before_consent} of them before the consent); {} green \
         frames (up to {most} of {} pixels), the first {:.2} s after the consent, {:.2} s after his camera was \
         published",
        greens.len(),
        WIDTH * HEIGHT,
        first_green.map_or(f64::NAN, |t| seconds(t - consented)),
        first_green.map_or(f64::NAN, |t| seconds(t - green_at)),
    );
}
