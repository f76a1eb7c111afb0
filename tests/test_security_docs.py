"""No third-party code at run time: the API docs come from the site, under a strict CSP."""

import re
import shutil

import pytest

from tests.test_browser_pipeline import CHROMEDRIVER, CHROMIUM, FLAGS

OUTSIDE = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/docs/", "/admin/login/"])
def test_html_pages_load_nothing_from_outside_under_a_self_only_policy(client, path):
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert not OUTSIDE.search(html), OUTSIDE.search(html)
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "cdn.jsdelivr.net" not in html


@pytest.mark.django_db
def test_the_docs_setup_script_is_a_file_of_the_site(client):
    html = client.get("/api/docs/").content.decode()
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts and all("src=" in attributes for attributes in scripts)
    assert client.get("/api/docs/?script=").status_code == 200


@pytest.fixture
def offline_browser(settings):
    """Headless Chromium that can reach the live server only: the outside is closed."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()) and not shutil.which(
        "chromedriver"
    ):
        pytest.fail(
            "no browser here: apt-get install -y chromium chromium-driver "
            "(the docs must be shown to load with the network closed)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    # Every host name but localhost fails to resolve, and no proxy is used.
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost")
    options.add_argument("--no-proxy-server")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(10)
    yield driver
    driver.quit()


@pytest.mark.django_db(transaction=True)
def test_the_docs_page_lists_the_operations_with_the_outside_network_closed(
    offline_browser, live_server
):
    from selenium.webdriver.common.by import By

    url = live_server.url.replace("127.0.0.1", "localhost")
    offline_browser.get(f"{url}/api/docs/")
    operations = offline_browser.find_elements(By.CSS_SELECTOR, ".opblock-summary")
    assert len(operations) >= 15
    paths = {
        element.text
        for element in offline_browser.find_elements(
            By.CSS_SELECTOR, ".opblock-summary-path"
        )
    }
    assert "/api/appointments/" in paths or "/api/appointments" in paths
    loaded = offline_browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded and all(name.startswith(url) for name in loaded), loaded
    refused = [
        entry["message"]
        for entry in offline_browser.get_log("browser")
        if "Content Security Policy" in entry["message"]
        and "script" in entry["message"]
    ]
    assert not refused, refused
