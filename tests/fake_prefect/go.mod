module floodgate/fakeprefect

go 1.26
