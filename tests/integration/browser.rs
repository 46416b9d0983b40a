//! End to end in a real browser: `promptdex serve` over a small real index, Debian's
//! `chromium` headless on the page, an eval image uploaded through the file input; the page
//! must show the generated prompt and the neighbours' thumbnails, and the prompt search must
//! answer as one types. Screenshots go to `target/browser-test/` for a person to look at.

use crate::common::{self, cdp};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cdp::{find_chromium, Browser};
use common::server::{build_small_index, image_set, Server};

/// What the page shows, for failure messages.
const DESCRIBE: &str = "JSON.stringify({state: document.body.dataset.state, \
    status: document.getElementById('status').textContent, \
    prompt: document.getElementById('prompt').textContent, \
    thumbs: document.querySelectorAll('#neighbours img').length})";

#[test]
fn upload_in_chromium_shows_the_prompt_and_the_neighbours() {
    let chromium = find_chromium().expect(
        "the browser test needs chromium: `apt-get install -y chromium` (as .ci/run does), \
         or set PROMPTDEX_CHROMIUM",
    );
    let index = build_small_index("browser");
    let server = Server::start(&index, &[]);
    let start = Instant::now();

    // The image to upload, and the prompt the API gives for it.
    let set = image_set();
    let labels = std::fs::read_to_string(set.join("prompts.csv")).unwrap();
    let (file, truth) = labels.lines().nth(3).unwrap().split_once(',').unwrap();
    let truth = truth.trim_matches('"');
    let image = set.join(file).canonicalize().unwrap();
    let expected = server
        .post("/api/generate", &std::fs::read(&image).unwrap())
        .json()["prompt"]
        .as_str()
        .unwrap()
        .to_string();

    let mut browser = Browser::launch(&chromium, 1280, 1000);
    browser.open(&server.url("/"));
    browser.wait_for(
        "document.readyState === 'complete' && document.body.dataset.state === 'ready'",
        Duration::from_secs(30),
        DESCRIBE,
    );
    // The statistics line comes from /api/stats.
    browser.wait_for(
        "document.getElementById('stats').textContent.includes('images')",
        Duration::from_secs(30),
        "document.getElementById('stats').textContent",
    );

    browser.set_file("#file", &image);
    browser.wait_for(
        "document.body.dataset.state === 'done' || document.body.dataset.state === 'error'",
        Duration::from_secs(90),
        DESCRIBE,
    );
    let shown = browser.eval("document.getElementById('prompt').textContent");
    assert_eq!(
        shown.as_str(),
        Some(expected.as_str()),
        "page: {}",
        browser.eval(DESCRIBE)
    );
    assert_eq!(
        browser.eval("document.getElementById('result').hidden"),
        false
    );
    // Every neighbour thumbnail loaded (decoded, non-empty), each with its prompt and score.
    let thumbs = browser.wait_for(
        "(() => { const imgs = [...document.querySelectorAll('#neighbours img')]; \
           return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0) \
             && imgs.length; })()",
        Duration::from_secs(30),
        DESCRIBE,
    );
    assert!(thumbs.as_u64().unwrap() >= 5, "{thumbs}");
    let cards =
        browser.eval("[...document.querySelectorAll('#neighbours .card')].map(c => c.textContent)");
    let cards = cards.as_array().unwrap();
    // The uploaded image is indexed: it is its own nearest neighbour, with its true prompt.
    let nearest = cards[0].as_str().unwrap();
    assert!(
        nearest.contains("similarity 1.000") && nearest.contains(truth),
        "{cards:?}"
    );
    let parts = browser.eval("document.querySelectorAll('#parts tbody tr').length");
    assert!(parts.as_u64().unwrap() >= 2, "{parts}");

    // Prompt search as one types (debounced).
    browser.eval(
        "(() => { const q = document.getElementById('q'); q.value = 'castle'; \
           q.dispatchEvent(new Event('input')); })()",
    );
    let hits = browser.wait_for(
        "document.querySelectorAll('#hits li').length",
        Duration::from_secs(30),
        "document.getElementById('search-status').textContent",
    );
    assert!(hits.as_u64().unwrap() >= 1);
    let first = browser.eval("document.querySelector('#hits li').textContent");
    assert!(
        first.as_str().unwrap().to_lowercase().contains("castle"),
        "{first}"
    );

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-test");
    browser.eval("window.scrollTo(0, 0)");
    browser.screenshot(&dir.join("screenshot.png"));

    // A phone-width viewport: nothing wider than the screen.
    browser.viewport(390, 844, true);
    let overflow = browser.wait_for(
        "new Promise(r => setTimeout(() => r(String(document.documentElement.scrollWidth)), 300))",
        Duration::from_secs(10),
        "document.documentElement.scrollWidth",
    );
    assert!(
        overflow.as_str().unwrap().parse::<u32>().unwrap() <= 390,
        "the page is {overflow} px wide on a 390 px phone"
    );
    browser.screenshot(&dir.join("screenshot-phone.png"));
    eprintln!(
        "browser test: {:.1} s after the server was up; screenshots in {}",
        start.elapsed().as_secs_f64(),
        dir.display()
    );
    assert!(browser.log().len() < 10_000);
}
