def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_page_renders(client, catalogue, links):
    subscriber = catalogue.subscriber()
    response = client.get(links.preferences(subscriber))
    assert response.status_code == 200
    assert "Offers" in response.get_data(as_text=True)
