"""One interception: the job and its ports (`job`, `ports`), the engine that admits, opens and ends it (`core`),
relaying (`relay`), the tool loop (`loop`), what the audit records (`record`), the Responses tap (`tap`) and client
detection (`clients`)."""
