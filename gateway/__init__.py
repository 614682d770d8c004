"""campus-gateway: carries a school's security alarms to a police-linked center."""
