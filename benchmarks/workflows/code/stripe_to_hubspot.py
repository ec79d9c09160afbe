# Copy the 100 most recent Stripe customers into HubSpot contacts, skipping emails HubSpot already has.
customers = await stripe.list_customers(limit=100)
existing = await hubspot.hubspot_search_objects(
    objectType="contacts",
    limit=100,
    properties=["email", "firstname", "lastname"],
    filterGroups=[{"filters": [{"propertyName": "createdate", "operator": "GTE", "value": "2026-10-27T09:30:00Z"}]}],
)
known = {c["properties"]["email"] for c in existing["results"]}
inputs = []
for c in customers:
    if c["email"] in known:
        continue
    first, last = c["name"].split(" ", 1)
    inputs.append(
        {
            "properties": {
                "email": c["email"],
                "firstname": first,
                "lastname": last,
                "city": c["address"]["city"],
                "country": c["address"]["country"],
                "stripe_customer_id": c["id"],
            }
        }
    )
created = await hubspot.hubspot_batch_create_objects(objectType="contacts", inputs=inputs)
print(
    f"{len(customers)} Stripe customers, {len(known)} already in HubSpot, created {len(created['results'])}: "
    f"{created['status']}"
)
