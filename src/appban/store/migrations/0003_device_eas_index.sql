-- appban schema, version 3: find a device's ActiveSync DeviceIds without a scan.
-- (device_eas is keyed by DeviceId first, for the gate; a device changing its
-- DeviceIds deleted by device_id, which scanned the whole table.)
CREATE INDEX device_eas_device ON device_eas (device_id);
