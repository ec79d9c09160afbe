# Orders of the last 30 days with a total >= $1,000 -> a new workbook. The rows never pass through the model.
rows = await postgres.query(
    sql="SELECT order_id, placed_at, customer_email, country, sku, quantity, unit_price, total, status FROM orders "
    "WHERE placed_at >= now() - interval '30 days' AND total >= 1000 ORDER BY placed_at"
)
path = "/reports/big-orders-2026-11.xlsx"
columns = list(rows[0])
await excel.create_workbook(path=path, sheets=["Orders"])
done = await excel.write_range(
    path=path, sheet="Orders", at="A1", rows=[columns] + [[r[c] for c in columns] for r in rows]
)
print(done)
print(f"{len(rows)} orders, {sum(r['total'] for r in rows):,.2f} USD in total")
