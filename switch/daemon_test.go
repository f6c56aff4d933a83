package main

import (
	"testing"

	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

func TestMain(m *testing.M) { switchtest.Main(m) }
