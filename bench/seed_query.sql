SELECT p.id, p.total, c.name, r.name
FROM olaclick.orders p
JOIN olaclick.clients c ON p.client_id = c.id
JOIN olaclick.restaurants r ON p.restaurant_id = r.id
WHERE p.status = 'sent' AND p.created_at >= now() - interval '7 days';
