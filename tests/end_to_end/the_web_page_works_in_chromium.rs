//! The web page in a real headless Chromium (Debian's `chromium` + `chromium-driver`, which
//! `.ci/run` installs), driven over WebDriver: log in with the node's one-time URL, upload a
//! file on node A's page and see it listed, paste its ID (with the spaces and line break a
//! copy brings along) into node B's page, fetch it, and download it through B's gateway link:
//! the same bytes. Each view is saved as a screenshot, at desktop and phone width, under
//! `target/tmp/web-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::common::*;
use crate::http::Http;
use crate::procs::NodeProc;

const WAIT: Duration = Duration::from_secs(60);

/// chromedriver on a free port, stopped when dropped.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn start_driver(driver: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let d = Driver(child, port);
    wait_for(Duration::from_secs(30), "chromedriver to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    d
}

async fn browser(driver: &Driver, chromium: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--no-proxy-server"],
        }),
    );
    ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a Chromium session")
}

fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

async fn view(c: &Client, name: &str) {
    c.find(Locator::Css(&format!("button[data-view={name}]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!("#view-{name}:not([hidden])")))
        .await
        .unwrap_or_else(|e| panic!("the {name} view shows: {e}"));
}

/// The element `css` selects, once it appears (within [`WAIT`]); `what` names it if not.
async fn appears(c: &Client, css: &str, what: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// [`appears`], by XPath (for "an element containing this text").
async fn appears_xpath(c: &Client, xpath: &str, what: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(xpath))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn type_into(c: &Client, css: &str, text: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_on_one_page_fetch_and_download_on_another() {
    let (Some(chromium), Some(chromedriver)) = (tool("chromium"), tool("chromedriver")) else {
        cannot_run("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeProc::start(&tmp.path().join("a"), None);
    let b = NodeProc::start(&tmp.path().join("b"), Some(a.addr()));
    let driver = start_driver(&chromedriver);
    let c = browser(&driver, &chromium).await;

    // Without logging in, the page says how to.
    c.goto(&a.api).await.unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#login-needed:not([hidden])"))
        .await
        .expect("the page asks to log in");
    shot(&c, "0-login-needed").await;

    // A's one-time login URL; then upload through the file picker.
    c.goto(&a.login_url).await.unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#view-items:not([hidden])"))
        .await
        .expect("logged in, the items view");
    let source = c.source().await.unwrap();
    assert!(
        !source.contains(Http::of(&a).token()),
        "the API token is never in the page"
    );
    let file = tmp.path().join("lecture 3.pdf");
    let data = write_random(&file, 1_500_000, 11);
    c.find(Locator::Css("#upload-input"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .expect("choose a file");
    let item = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//*[@id='items']//*[@data-id][contains(., 'lecture 3.pdf')]",
        ))
        .await
        .expect("the upload is listed");
    let id = item.attr("data-id").await.unwrap().expect("its ID");
    assert!(id.starts_with("sg1"), "{id}");
    let open = item.find(Locator::Css("a.open")).await.unwrap();
    assert_eq!(
        open.attr("href").await.unwrap().as_deref(),
        Some(format!("/c/{id}").as_str())
    );
    item.find(Locator::Css("button.copy-id")).await.unwrap();
    shot(&c, "1-items").await;

    // B's page: paste the ID as a copy brings it (spaces, a line break), fetch.
    c.goto(&b.login_url).await.unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#node-id"))
        .await
        .unwrap();
    view(&c, "fetch").await;
    c.find(Locator::Css("#fetch-id"))
        .await
        .unwrap()
        .send_keys(&format!("  {id}\n "))
        .await
        .unwrap();
    // (The textarea may take Enter as "fetch"; the button is clicked only if it did not.)
    let started = c.find(Locator::Css("#jobs [data-job]")).await.is_ok();
    if !started {
        c.find(Locator::Css("#fetch-go"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    let done = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#jobs [data-job][data-state=done]"))
        .await
        .expect("the fetch completes on B's page");
    let href = done
        .find(Locator::Css("a.download"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .expect("a download link");
    assert_eq!(href, format!("/c/{id}?download"));
    shot(&c, "2-fetch").await;

    // The download link, through B's gateway: the same bytes.
    let api_b = Http::of(&b);
    let got = api_b.req(reqwest::Method::GET, &href).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"),);
    assert!(
        got.bytes().await.unwrap() == data,
        "the bytes downloaded are the bytes uploaded"
    );

    // B has A as a peer, and draws it in its routing table.
    view(&c, "peers").await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!("#peers [data-peer='{}']", a.peer_id)))
        .await
        .expect("A among B's peers");
    shot(&c, "3-peers").await;
    view(&c, "network").await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!(
            "svg#routing [data-peer='{}']",
            a.peer_id
        )))
        .await
        .expect("A drawn in B's routing table");
    shot(&c, "4-network").await;

    // Who holds the item: A and B. The holders view and the item's copy count agree — B's
    // own pin is not one of the network's copies, and the view says so.
    c.find(Locator::Css("#who-id"))
        .await
        .unwrap()
        .send_keys(&id)
        .await
        .unwrap();
    c.find(Locator::Css("#who-go"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    appears(&c, "#who-result ul.holders li", "the holders list").await;
    let said = c
        .find(Locator::Css("#who-result p"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        said.starts_with("2 peers hold") && said.contains("this node, and 1 of the 3 copies"),
        "{said}"
    );
    view(&c, "items").await;
    let badge = format!("#items button.health[data-for='{id}']");
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let text = match c.find(Locator::Css(&badge)).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains("1 of 3 copies") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the item's badge says {text:?} where the holders view said {said:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Collections: A publishes from its page (a file dropped into the collection, then
    // Publish); B follows by ID, sees a second version arrive live, and searches.
    let api_a = Http::of(&a);
    let (status, made) = api_a
        .post_json(
            "/api/v1/collections",
            &serde_json::json!({ "name": "algo-101" }),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let cid = made["id"].as_str().unwrap().to_owned();
    c.goto(&format!("{}/#collections", a.api)).await.unwrap();
    appears(
        &c,
        "#view-collections:not([hidden])",
        "A's collections view",
    )
    .await;
    appears(&c, "input#pub-algo-101", "the publisher's drop zone")
        .await
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    appears_xpath(
        &c,
        "//*[@id='collections']//button[not(@disabled)][contains(., 'Publish')]",
        "a change waiting to be published",
    )
    .await
    .click()
    .await
    .unwrap();
    appears_xpath(
        &c,
        "//*[@id='collections']//*[contains(., 'version 1 ·')]",
        "version 1 published from the page",
    )
    .await;
    shot(&c, "5-collection-publisher").await;

    c.goto(&format!("{}/#collections", b.api)).await.unwrap();
    appears(
        &c,
        "#view-collections:not([hidden])",
        "B's collections view",
    )
    .await;
    type_into(&c, "#follow-id", &format!(" {cid}\n")).await;
    click(&c, "#follow-auto").await;
    click(&c, "#follow-go").await;
    appears_xpath(
        &c,
        "//*[@id='collections']//*[contains(@class,'entry-title')][contains(., 'lecture 3')]",
        "B lists the collection's first item",
    )
    .await;
    let sheet = api_a.upload("sheet.pdf", random_bytes(50_000, 12)).await;
    let entry = serde_json::json!({ "id": sheet, "title": "Assignment 1 (final)",
        "tags": ["assignment"], "note": "due Friday" });
    let (status, e) = api_a
        .post_json("/api/v1/collections/algo-101/entries", &entry)
        .await;
    assert_eq!(status, 200, "{e}");
    let (status, p) = api_a.post("/api/v1/collections/algo-101/publish").await;
    assert_eq!(status, 200, "{p}");
    appears_xpath(
        &c,
        "//*[@id='collections']//*[contains(@class,'entry new')][contains(., 'Assignment 1')]",
        "version 2's item appears on B's page, marked new, without a reload",
    )
    .await;
    type_into(&c, "#search-words", "assignment").await;
    click(&c, "#search-form button[type=submit]").await;
    appears_xpath(
        &c,
        "//*[@id='search-results']//*[contains(., 'algo-101 · version 2')]",
        "search finds the assignment and names the collection and version",
    )
    .await;
    shot(&c, "6-collections").await;

    // A phone's width.
    c.set_window_size(390, 844).await.unwrap();
    view(&c, "items").await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!("#items [data-id='{id}']")))
        .await
        .expect("the fetched item listed on B");
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow,
        serde_json::json!(false),
        "no sideways scrolling at 390 px"
    );
    shot(&c, "7-items-phone").await;
    view(&c, "fetch").await;
    shot(&c, "8-fetch-phone").await;
    view(&c, "collections").await;
    shot(&c, "9-collections-phone").await;
    c.close().await.unwrap();
    eprintln!("screenshots in {}", shots_dir().display());
}
