// Package ory asks Ory for a JWT of a session: GET
// /sessions/whoami?tokenize_as=<template> through github.com/ory/client-go,
// and sorts every answer into a small set of error classes that the authz
// package maps to Envoy answers.
package ory
