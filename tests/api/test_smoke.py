"""The service is up, reachable through Prism, and serves its contract."""
import yaml


def test_healthz_answers_200_through_prism(anon):
    r = anon.get("/healthz")
    assert r.status_code == 200, r.text


def test_readyz_answers_200_with_the_database_up(anon):
    r = anon.get("/readyz")
    assert r.status_code == 200, r.text


def test_openapi_yaml_is_served_and_parses(anon):
    r = anon.get("/openapi.yaml")
    assert r.status_code == 200, r.text[:300]
    doc = yaml.safe_load(r.text)
    assert str(doc.get("openapi", "")).startswith("3."), doc.keys()
    assert "/v1/partners/{partnerId}/benefits" in doc.get("paths", {})
