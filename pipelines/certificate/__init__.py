"""What a run's certificate states and how it is issued: rounding (GUM 7.2.6), the laboratory's
CMC floor (ILAC-P14), certificate numbers and revisions, the printable certificate, and the
checks of `remotecal certificate verify`.  The DCC's XML itself lives in `pipelines.dcc`."""
